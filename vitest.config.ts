// vitest 5 reports failures with Map.groupBy, which Node 20 lacks (it declares Node 22).
import "core-js/actual/map/group-by.js"
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
