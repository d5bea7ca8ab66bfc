#!/usr/bin/env node
// In a checkout the CLI runs from the TypeScript sources through tsx (both of its loaders: the
// CommonJS one also resolves tfjs-core's unbundled gradient modules), so it needs no build; the
// published package has no sources and runs its compiled dist/.
import { existsSync } from "node:fs"

const sources = new URL("../src/runtime/cli/main.ts", import.meta.url)
if (existsSync(sources)) {
  const { register: registerCommonJs } = await import("tsx/cjs/api")
  const { register } = await import("tsx/esm/api")
  registerCommonJs()
  register({ tsconfig: new URL("../tsconfig.json", import.meta.url).pathname })
  await import(sources.href)
} else {
  await import("../dist/runtime/cli/main.js")
}
