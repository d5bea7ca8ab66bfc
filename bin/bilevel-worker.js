#!/usr/bin/env node
// A sweep's worker process (started by `bilevel sweep` and `bilevel runner`, not by hand). It dies
// with its parent, from the first instant: loading the sources takes seconds, and a worker orphaned
// meanwhile must not go on to write a record another process is about to resume.
process.on("disconnect", () => process.exit(1))
if (!process.connected) process.exit(1)

// The same loaders as bilevel.js, then one run received over IPC.
const { register: registerCommonJs } = await import("tsx/cjs/api")
const { register } = await import("tsx/esm/api")
registerCommonJs()
register()
await import("../src/runtime/sweep/worker.ts")
