/**
 * The run pipeline as a user drives it: every preset runs and records its cost, no tensor outlives
 * a run, and each kind of bad input ends in its typed error.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Layer } from "effect"
import * as path from "node:path"
import * as Backend from "../src/runtime/Backend.ts"
import { run } from "../src/runtime/run.ts"
import * as RunRecord from "../src/runtime/RunRecord.ts"
import { methods } from "../src/solvers/methods.ts"
import { scratchDir } from "./support/scratch.ts"

const scratch = scratchDir("run")
let runs = 0
const out = () => path.join(scratch, `run-${runs++}`)

const toy = (method: string, settings: Record<string, unknown> = {}) =>
  run({ task: "toy-nonconvex", method, seed: 0, settings: { outerSteps: 3, innerSteps: 6, ...settings }, out: out() })

layer(Layer.merge(Backend.layer("cpu"), NodeServices.layer))("run pipeline", (it) => {
  it.effect("every preset runs toy-nonconvex and records its cost per outer step", () =>
    Effect.gen(function*() {
      for (const method of methods) {
        const result = yield* toy(method.name)
        const record = yield* RunRecord.read(result.runDir)
        assert.strictEqual(record.steps.length, 3, method.name)
        assert.strictEqual(record.summary?.status, "completed")
        for (const step of record.steps) {
          // SOBA is single-loop: one LL step per outer step, whatever innerSteps says.
          assert.strictEqual(step.cost.innerSteps, method.name === "soba" ? 1 : 6, method.name)
          assert.isAtLeast(step.kbar, 1, method.name)
          assert.isTrue(Number.isFinite(step.F) && Number.isFinite(step.hypergradNorm), method.name)
        }
      }
    }))

  it.effect("no tensor outlives a run, whatever the method", () =>
    Effect.gen(function*() {
      for (const method of ["iaptt-gm", "ls", "ia-gm-a"]) {
        const before = tf.memory().numTensors
        yield* toy(method, { outerSteps: 25 })
        assert.strictEqual(tf.memory().numTensors, before, method)
      }
      const before = tf.memory().numTensors
      yield* run({ task: "quadratic", method: "rhg", seed: 1, settings: { outerSteps: 5, innerSteps: 10 }, out: out() })
      assert.strictEqual(tf.memory().numTensors, before, "quadratic")
    }))

  it.effect("the result carries config, final x, the y used by F and x's tail statistics", () =>
    Effect.gen(function*() {
      const result = yield* toy("iaptt-gm", { outerSteps: 4, x0: 5, y0: 1 })
      assert.deepStrictEqual(result.config, { x0: 5, y0: 1, outerSteps: 4, innerSteps: 6, innerLr: 0.0005, outerLr: 0.1, warmStart: false })
      assert.strictEqual(result.outerSteps, 4)
      assert.hasAllKeys(result.final, ["F", "x", "y", "xTail"])
      assert.strictEqual((result.final["xTail"] as { steps: number }).steps, 4)
    }))

  it.effect("bad input ends in typed errors naming what is wrong", () =>
    Effect.gen(function*() {
      const failure = (e: Effect.Effect<unknown, { readonly _tag: string; readonly message: string }, any>) =>
        Effect.flip(e)
      const unknownMethod = yield* failure(toy("nope"))
      assert.strictEqual(unknownMethod._tag, "UnknownName")
      assert.include(unknownMethod.message, "iaptt-gm")
      const unknownTask = yield* failure(run({ task: "nope", method: "rhg", seed: 0, settings: {}, out: out() }))
      assert.strictEqual(unknownTask._tag, "UnknownName")
      const unknownKey = yield* failure(toy("rhg", { lastM: 3 }))
      assert.strictEqual(unknownKey._tag, "InvalidConfig")
      assert.include(unknownKey.message, "\"lastM\"")
      assert.include(unknownKey.message, "innerSteps")
      const wrongType = yield* failure(toy("rhg", { innerSteps: "many" }))
      assert.strictEqual(wrongType._tag, "InvalidConfig")
      assert.include(wrongType.message, "innerSteps")
      const outOfRange = yield* failure(toy("rhg", { innerSteps: 0 }))
      assert.include(outOfRange.message, "greater than 0")
      const badRate = yield* failure(toy("bda", { bdaMu0: 1.5 }))
      assert.include(badRate.message, "bdaMu0")
      const dir = out()
      yield* run({ task: "toy-nonconvex", method: "rhg", seed: 0, settings: { outerSteps: 1 }, out: dir })
      const existing = yield* failure(run({ task: "toy-nonconvex", method: "rhg", seed: 0, settings: { outerSteps: 1 }, out: dir }))
      assert.strictEqual(existing._tag, "RunRecordError")
      assert.include(existing.message, "already exists")
    }))
})
