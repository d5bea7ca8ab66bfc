import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Each file gets a fresh process: tfjs keeps global kernel and gradient registries.
    pool: "forks",
    testTimeout: 60_000,
    hookTimeout: 60_000
  }
})
