#!/usr/bin/env node
// Runs the TypeScript sources through tsx, so the installed package needs no build step. Both of
// tsx's loaders: the CommonJS one also resolves tfjs-core's unbundled gradient modules.
import { register as registerCommonJs } from "tsx/cjs/api"
import { register } from "tsx/esm/api"

registerCommonJs()
register()
await import("../src/runtime/cli/main.ts")
