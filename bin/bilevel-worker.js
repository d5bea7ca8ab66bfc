#!/usr/bin/env node
// A sweep's worker process (started by `bilevel sweep` and `bilevel runner`, not by hand): the same
// loaders as bilevel.js, then one run received over IPC.
import { register as registerCommonJs } from "tsx/cjs/api"
import { register } from "tsx/esm/api"

registerCommonJs()
register()
await import("../src/runtime/sweep/worker.ts")
