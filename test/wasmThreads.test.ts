/**
 * The wasm backend on threads (src/runtime/wasmThreads.ts), run as a user runs it: the CLI in a child
 * process, since the tfjs backend is process-wide. A run on 2 threads records them, writes the same
 * trajectory as one on tfjs's single-thread build, and its process exits by itself (the pthread
 * workers must not keep it alive); a bad BILEVEL_WASM_THREADS is a typed error that names it.
 */
import { assert, describe, it } from "@effect/vitest"
import { readFileSync } from "node:fs"
import * as path from "node:path"
import { bilevel } from "./support/cli.ts"
import { syntheticDataDir } from "./support/syntheticIdx.ts"
import { scratchDir } from "./support/scratch.ts"

const scratch = scratchDir("threads")
const dataDir = syntheticDataDir()

/** Hyper-cleaning on the synthetic file; products of 130 × 36 by 36 × 10, split across threads by XNNPACK. */
const runOn = (threads: string) =>
  bilevel(
    [
      "run", "hyper-cleaning", "--method", "rhg", "--backend", "wasm", "--out", path.join(scratch, threads),
      "--set", `dataDir=${dataDir}`, "--set", "trainSize=130", "--set", "valSize=130", "--set", "testSize=130",
      "--set", "innerSteps=10", "--set", "outerSteps=3", "--set", "innerLr=0.5"
    ],
    { cwd: scratch, env: { BILEVEL_WASM_THREADS: threads } }
  )

/** Each outer step's record without its wall time. */
const trajectory = (threads: string) =>
  readFileSync(path.join(scratch, threads, "steps.ndjson"), "utf8").trim().split("\n").map((line) => {
    const { ms: _ms, ...rest } = JSON.parse(line) as Record<string, unknown>
    return rest
  })

const threadsOf = (threads: string) =>
  (JSON.parse(readFileSync(path.join(scratch, threads, "run.json"), "utf8")) as { threads?: number }).threads

describe("wasm threads", () => {
  it("two threads give the one-thread trajectory bit for bit, and the process exits by itself", { timeout: 120_000 }, async () => {
    const [one, two] = await Promise.all([runOn("1"), runOn("2")])
    assert.strictEqual(one.code, 0, one.stderr)
    assert.strictEqual(two.code, 0, two.stderr)
    assert.strictEqual(threadsOf("1"), 1)
    assert.strictEqual(threadsOf("2"), 2)
    const steps = trajectory("2")
    assert.strictEqual(steps.length, 3)
    assert.deepStrictEqual(steps, trajectory("1"))
  })

  it("a bad BILEVEL_WASM_THREADS is refused with what to set", { timeout: 60_000 }, async () => {
    const finished = await bilevel(["run", "toy-nonconvex", "--method", "rhg", "--backend", "wasm"], {
      cwd: scratch,
      env: { BILEVEL_WASM_THREADS: "0" }
    })
    assert.notStrictEqual(finished.code, 0)
    assert.include(finished.stderr, "BILEVEL_WASM_THREADS")
    assert.include(finished.stderr, "whole number")
  })
})
