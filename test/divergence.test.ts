/**
 * Divergence: a NaN or Inf in the UL objective, the hypergradient, or x or z after the UL update
 * stops the run with `Diverged`, naming the step, the quantity and the last finite values; the run
 * record keeps every step before it and its summary says "failed" with the error.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Layer, Stream } from "effect"
import * as path from "node:path"
import type { Diverged } from "../src/domain/errors.ts"
import type { BilevelProblem } from "../src/domain/Problem.ts"
import * as Random from "../src/domain/Random.ts"
import { tensorScope } from "../src/domain/tensors.ts"
import { gradientDescent } from "../src/dynamics/Dynamics.ts"
import * as Backend from "../src/runtime/Backend.ts"
import { run } from "../src/runtime/run.ts"
import * as RunRecord from "../src/runtime/RunRecord.ts"
import { sgd } from "../src/solvers/optimizers.ts"
import { initialState, outerSteps, type UpperOptimizers } from "../src/solvers/outerLoop.ts"
import * as Solver from "../src/solvers/Solver.ts"
import { scratchDir } from "./support/scratch.ts"

const scratch = scratchDir("divergence")
let runs = 0

const small = { dimX: 4, dimY: 6, innerSteps: 10, outerSteps: 30 }

/** Runs the quadratic task until it fails; returns the error and the record it left. */
const diverge = (method: string, settings: Record<string, unknown>) =>
  Effect.gen(function*() {
    const out = path.join(scratch, `run-${runs++}`)
    const before = tf.memory().numTensors
    const error = yield* Effect.flip(run({ task: "quadratic", method, seed: 0, settings: { ...small, ...settings }, out }))
    assert.strictEqual(tf.memory().numTensors, before, "a diverged run releases its tensors")
    assert.strictEqual(error._tag, "Diverged")
    return { error: error as Diverged, record: yield* RunRecord.read(out) }
  })

/** Pulls outer steps of a hand-made problem until the loop fails. */
const divergeLoop = (problem: BilevelProblem, solver: Solver.Bounded, x0: Array<number>, z0: Array<number>, optimizers: UpperOptimizers) =>
  Effect.suspend(() =>
    outerSteps(solver, problem, initialState(tf.tensor1d(x0), tf.tensor1d(z0), optimizers), optimizers, Random.key(0)).pipe(
      Stream.take(5),
      Stream.runDrain,
      Effect.flip,
      Effect.map((error) => error as Diverged)
    )
  ).pipe(tensorScope)

/** F = Σ√|x| + ½‖y‖², f = ½‖y − x‖²: F is finite at x = 0, its gradient in x is not. */
const kinked: BilevelProblem = {
  upper: (x, y) => tf.add(tf.sum(tf.sqrt(tf.abs(x))), tf.mul(0.5, tf.sum(tf.square(y)))),
  lower: (x, y) => tf.mul(0.5, tf.sum(tf.square(tf.sub(y, x))))
}

const descent = Solver.make(gradientDescent({ lr: 0.5 })).pipe(Solver.take(5))

layer(Layer.merge(Backend.layer("cpu"), NodeServices.layer))("divergence", (it) => {
  it.effect("F blowing up after some steps: the record keeps every step before it and says failed", () =>
    Effect.gen(function*() {
      const { error, record } = yield* diverge("rhg", { outerLr: 200 })
      assert.strictEqual(error.quantity, "the UL objective F")
      assert.isAbove(error.step, 2)
      assert.strictEqual(record.steps.length, error.step)
      for (const step of record.steps) assert.isTrue(Number.isFinite(step.F) && Number.isFinite(step.hypergradNorm))
      const last = record.steps.at(-1)!
      assert.deepStrictEqual(
        { step: error.lastFinite["step"], F: error.lastFinite["F"], hypergradNorm: error.lastFinite["hypergradNorm"] },
        { step: last.t, F: last.F, hypergradNorm: last.hypergradNorm }
      )
      assert.lengthOf(error.lastFinite["x"] as Array<number>, 4)
      assert.strictEqual(record.summary?.status, "failed")
      assert.strictEqual(record.summary?.outerSteps, error.step)
      assert.deepStrictEqual(record.summary?.final, {})
      assert.strictEqual(record.summary?.error, `Diverged: ${error.message}`)
      assert.include(error.message, `outer step ${error.step}: the UL objective F is not finite`)
      assert.include(error.message, "innerLr, outerLr")
    }))

  it.effect("an unstable LL step makes F infinite at step 0: the last finite values are the initial point", () =>
    Effect.gen(function*() {
      const { error, record } = yield* diverge("rhg", { innerLr: 30 })
      assert.strictEqual(error.step, 0)
      assert.strictEqual(error.quantity, "the UL objective F")
      assert.hasAllKeys(error.lastFinite, ["x"])
      assert.lengthOf(record.steps, 0)
      assert.strictEqual(record.summary?.status, "failed")
    }))

  it.effect("an UL step overflowing float32 is caught in x after the update", () =>
    Effect.gen(function*() {
      const { error, record } = yield* diverge("ia-gm", { outerLr: 3e38 })
      assert.strictEqual(error.step, 0)
      assert.strictEqual(error.quantity, "x after the UL update")
      // Step 0 itself was finite: its F and hypergradient are the last finite values.
      assert.strictEqual(error.lastFinite["step"], 0)
      assert.isTrue(Number.isFinite(error.lastFinite["F"]))
      assert.lengthOf(record.steps, 0)
    }))

  it.effect("a non-finite hypergradient with a finite F is named as such", () =>
    Effect.gen(function*() {
      const error = yield* divergeLoop(kinked, descent, [0, 1], [0, 0], { x: sgd(0.1), z: sgd(0.1) })
      assert.strictEqual(error.step, 0)
      assert.strictEqual(error.quantity, "the hypergradient")
      assert.deepStrictEqual(error.lastFinite, { x: [0, 1] })
    }))

  it.effect("z overflowing under auxiliary-init is caught after the update", () =>
    Effect.gen(function*() {
      const error = yield* divergeLoop(kinked, descent.pipe(Solver.auxiliaryInit), [1, 1], [1e4, 1e4], { x: sgd(0.1), z: sgd(3e38) })
      assert.strictEqual(error.step, 0)
      assert.strictEqual(error.quantity, "z (the LL initialization) after the UL update")
    }))

  it.effect("bounded toy iterates never diverge, even at absurd step sizes", () =>
    Effect.gen(function*() {
      // x ∈ [1, 10] and y ∈ [−2, 2] are projected: the toy stays finite however large the steps.
      const result = yield* run({
        task: "toy-nonconvex",
        method: "iaptt-gm",
        seed: 0,
        settings: { outerSteps: 5, innerSteps: 5, innerLr: 1e30, outerLr: 1e30 },
        out: path.join(scratch, `run-${runs++}`)
      })
      assert.strictEqual(result.outerSteps, 5)
    }))
})
