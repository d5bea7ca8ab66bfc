/**
 * Deterministic replay: committed run records (test/fixtures/records, made by the CLI on cpu)
 * replay bit for bit; a perturbed copy reports its first differing step, field and values; corrupt
 * and truncated records are typed errors; and nothing in src draws randomness past the seeded Rng.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it, layer } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Layer } from "effect"
import { cpSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import * as Backend from "../src/runtime/Backend.ts"
import { assertIdentical, firstFieldDifference, firstStepDifference, replay } from "../src/runtime/replay.ts"
import type { StepRecord } from "../src/runtime/RunRecord.ts"
import { scratchDir } from "./support/scratch.ts"

const fixtures = path.join(import.meta.dirname, "fixtures", "records")
const scratch = scratchDir("replay")
let copies = 0
/** A copy of a fixture that the test may damage. */
const copyOf = (name: string) => {
  const dir = path.join(scratch, `${name}-${copies++}`)
  cpSync(path.join(fixtures, name), dir, { recursive: true })
  return dir
}
const stepsFile = (dir: string) => path.join(dir, "steps.ndjson")
const readLines = (dir: string) => readFileSync(stepsFile(dir), "utf8").split("\n").filter((l) => l !== "")

layer(Layer.merge(Backend.layer("cpu"), NodeServices.layer))("replay", (it) => {
  for (const name of readdirSync(fixtures)) {
    it.effect(`the committed record ${name} replays bit for bit`, () =>
      Effect.gen(function*() {
        const before = tf.memory().numTensors
        const report = yield* replay({ dir: path.join(fixtures, name) })
        assert.isTrue(report.identical, JSON.stringify(report.firstDifference))
        assert.strictEqual(report.replayedSteps, report.recordedSteps)
        assert.isAbove(report.recordedSteps, 0)
        assert.deepStrictEqual(report.ignored, ["ms", "*Ms", "*MsPerStep"])
        assert.strictEqual(tf.memory().numTensors, before)
        yield* assertIdentical(report)
      }))
  }

  it.effect("a perturbed record reports the first differing step, field and both values", () =>
    Effect.gen(function*() {
      const dir = copyOf("toy-nonconvex-rhg")
      const lines = readLines(dir)
      const step7 = JSON.parse(lines[7]!) as StepRecord
      const original = step7.hypergradNorm
      // One unit in the last place of float32, on a later step too: the first one must be reported.
      const perturbed = Math.fround(original * (1 + 2 ** -22))
      lines[7] = JSON.stringify({ ...step7, hypergradNorm: perturbed })
      const step12 = JSON.parse(lines[12]!) as StepRecord
      lines[12] = JSON.stringify({ ...step12, F: step12.F + 1 })
      writeFileSync(stepsFile(dir), lines.join("\n") + "\n")
      const report = yield* replay({ dir })
      assert.isFalse(report.identical)
      assert.deepStrictEqual(report.firstDifference, { step: 7, field: "hypergradNorm", recorded: perturbed, replayed: original })
      const mismatch = yield* Effect.flip(assertIdentical(report))
      assert.strictEqual(mismatch._tag, "ReplayMismatch")
      assert.include(mismatch.message, "outer step 7")
      assert.include(mismatch.message, "\"hypergradNorm\"")
      assert.include(mismatch.message, String(original))
      // Within a tolerance the ulp passes, and the gross change at step 12 is what remains.
      const tolerant = yield* replay({ dir, tolerance: 1e-6 })
      assert.deepStrictEqual(tolerant.firstDifference?.step, 12)
      assert.deepStrictEqual(tolerant.firstDifference?.field, "F")
    }))

  it.effect("a changed setting in run.json shows at step 0; a changed summary after the last step", () =>
    Effect.gen(function*() {
      const dir = copyOf("quadratic-ls")
      const info = JSON.parse(readFileSync(path.join(dir, "run.json"), "utf8"))
      writeFileSync(path.join(dir, "run.json"), JSON.stringify({ ...info, seed: 1 }))
      const reseeded = yield* replay({ dir })
      assert.strictEqual(reseeded.firstDifference?.step, 0)

      const other = copyOf("quadratic-ls")
      const summary = JSON.parse(readFileSync(path.join(other, "summary.json"), "utf8"))
      writeFileSync(path.join(other, "summary.json"), JSON.stringify({ ...summary, final: { ...summary.final, xError: 0 } }))
      const changed = yield* replay({ dir: other })
      assert.deepStrictEqual(
        { step: changed.firstDifference?.step, field: changed.firstDifference?.field },
        { step: 20, field: "summary.final.xError" }
      )
    }))

  it.effect("a record cut short by a kill replays up to its last step; a failed one up to its failure", () =>
    Effect.gen(function*() {
      const dir = copyOf("toy-nonconvex-iaptt-gm")
      writeFileSync(stepsFile(dir), readLines(dir).slice(0, 6).join("\n") + "\n")
      rmSync(path.join(dir, "summary.json"))
      const report = yield* replay({ dir })
      assert.isTrue(report.identical)
      assert.strictEqual(report.replayedSteps, 6)

      const diverged = yield* replay({ dir: path.join(fixtures, "quadratic-rhg-diverged") })
      assert.isTrue(diverged.identical)
      const summary = JSON.parse(readFileSync(path.join(fixtures, "quadratic-rhg-diverged", "summary.json"), "utf8"))
      assert.strictEqual(summary.status, "failed")
      assert.strictEqual(diverged.replayedSteps, summary.outerSteps)
    }))

  it.effect("the replay's own record is kept with `out`, and never overwrites", () =>
    Effect.gen(function*() {
      const out = path.join(scratch, "kept")
      const report = yield* replay({ dir: path.join(fixtures, "toy-nonconvex-rhg"), out })
      assert.strictEqual(report.replayDir, out)
      assert.strictEqual(readLines(out).length, 20)
      const again = yield* Effect.flip(replay({ dir: path.join(fixtures, "toy-nonconvex-rhg"), out }))
      assert.strictEqual(again._tag, "RunRecordError")
    }))

  it.effect("corrupt and truncated records are typed errors naming the file and line", () =>
    Effect.gen(function*() {
      const torn = copyOf("toy-nonconvex-rhg")
      writeFileSync(stepsFile(torn), readFileSync(stepsFile(torn), "utf8") + "{\"t\":20,\"F\":-1.2")
      const tornError = yield* Effect.flip(replay({ dir: torn }))
      assert.strictEqual(tornError._tag, "RunRecordError")
      assert.include(tornError.message, "steps.ndjson line 21")

      const shuffled = copyOf("toy-nonconvex-rhg")
      const lines = readLines(shuffled)
      ;[lines[3], lines[4]] = [lines[4]!, lines[3]!]
      writeFileSync(stepsFile(shuffled), lines.join("\n") + "\n")
      const order = yield* Effect.flip(replay({ dir: shuffled }))
      assert.include(order.message, "line 4")
      assert.include(order.message, "corrupt")

      const noInfo = copyOf("toy-nonconvex-rhg")
      writeFileSync(path.join(noInfo, "run.json"), "{\"task\": \"toy-nonconvex\"")
      assert.include((yield* Effect.flip(replay({ dir: noInfo }))).message, "run.json")

      const missing = yield* Effect.flip(replay({ dir: path.join(scratch, "nothing-here") }))
      assert.strictEqual(missing._tag, "RunRecordError")
      assert.include(missing.message, "is this a run directory?")
    }))
})

describe("step comparison", () => {
  const step = (t: number, fields: Record<string, unknown> = {}) =>
    ({ t, F: 1.5, kbar: 3, hypergradNorm: 2, ms: 10 + t, cost: { innerSteps: 4, reverseSteps: 4, hvps: 0, peakBytes: 64 }, ...fields }) as StepRecord

  it("ignores wall-clock fields, and reports a missing step or field", () => {
    assert.isUndefined(firstStepDifference([step(0), step(1)], [step(0, { ms: 99 }), step(1, { ms: 0 })]))
    // Timings in a summary's final block too, by name: hyper-cleaning's meanMsPerStep, a wall time.
    assert.isUndefined(firstFieldDifference({ final: { meanMsPerStep: 3, F: 1 }, wallMs: 5 }, { final: { meanMsPerStep: 4, F: 1 }, wallMs: 6 }))
    assert.strictEqual(firstFieldDifference({ final: { msg: "a" } }, { final: { msg: "b" } })?.field, "final.msg")
    assert.deepStrictEqual(firstStepDifference([step(0), step(1)], [step(0)]), { step: 1, field: "t", recorded: 1, replayed: undefined })
    assert.deepStrictEqual(firstStepDifference([step(0)], [step(0, { x: 1 })]), { step: 0, field: "x", recorded: undefined, replayed: 1 })
    assert.deepStrictEqual(
      firstStepDifference([step(0, { cost: { innerSteps: 4, reverseSteps: 4, hvps: 0, peakBytes: 64 } })], [step(0, { cost: { innerSteps: 4, reverseSteps: 3, hvps: 0, peakBytes: 64 } })]),
      { step: 0, field: "cost.reverseSteps", recorded: 4, replayed: 3 }
    )
    assert.isUndefined(firstStepDifference([step(0)], [step(0, { cost: { innerSteps: 4, reverseSteps: 4, hvps: 0, peakBytes: 1 } })], { ignore: ["ms", "peakBytes"] }))
  })

  it("compares numbers bit for bit unless given a relative tolerance", () => {
    const a = [step(0, { F: 0.1 + 0.2 })]
    const b = [step(0, { F: 0.3 })]
    assert.strictEqual(firstStepDifference(a, b)?.field, "F")
    assert.isUndefined(firstStepDifference(a, b, { tolerance: 1e-15 }))
  })
})

describe("determinism", () => {
  /** Every source file under src. */
  const sources = (dir: string): Array<string> =>
    readdirSync(dir).flatMap((name) => {
      const file = path.join(dir, name)
      return statSync(file).isDirectory() ? sources(file) : file.endsWith(".ts") ? [file] : []
    })

  it("nothing in src draws randomness except through the seeded Rng", () => {
    // Math.random and crypto are unseeded; tfjs random ops must get a seed derived from the Rng.
    const unseeded = /Math\.random|crypto\.random|randomUUID|randomBytes|getRandomValues/
    const tfRandom = /\b(?:tf\.)?(?:random(?:Uniform|Normal|Gamma|StandardNormal|UniformInt)|truncatedNormal|multinomial)\s*\(/
    const offenders = sources(path.join(import.meta.dirname, "..", "src")).flatMap((file) =>
      readFileSync(file, "utf8").split("\n").flatMap((line, i) =>
        unseeded.test(line) || (tfRandom.test(line) && !/seed/i.test(line)) ? [`${path.relative(".", file)}:${i + 1}: ${line.trim()}`] : []
      )
    )
    assert.deepStrictEqual(offenders, [])
  })
})
