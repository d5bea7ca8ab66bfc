// vitest 5 reports failures with Map.groupBy, which Node 20 lacks (it declares Node 22).
import "core-js/actual/map/group-by.js"
import { fileURLToPath } from "node:url"
import { defineConfig } from "vitest/config"

export default defineConfig({
  // The package by its own name, as a user's code imports it (examples/, docs/), is the sources here.
  resolve: { alias: { "effect-bilevel": fileURLToPath(new URL("./src/index.ts", import.meta.url)) } },
  test: {
    include: ["test/**/*.test.ts"],
    // Fails the run when a test leaves a temporary directory behind.
    globalSetup: ["test/support/leftovers.ts"],
    // Each file gets a fresh process: tfjs keeps global kernel and gradient registries.
    pool: "forks",
    // The files run in parallel, one process per core: kernels on more threads would only contend.
    // test/wasmThreads.test.ts sets its own.
    env: { BILEVEL_WASM_THREADS: "1" },
    testTimeout: 60_000,
    hookTimeout: 60_000
  }
})
