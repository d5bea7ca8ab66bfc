/**
 * Warm start (issue 20): y_0 of outer step t + 1 is y_K of step t, a constant; its hypergradient is
 * the fixed-init one from that y_0; it survives checkpoint/resume bit for bit; it is refused where it
 * would replace auxiliary-init's learned z.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Effect, Layer, Stream } from "effect"
import * as path from "node:path"
import * as Random from "../src/domain/Random.ts"
import { gradientDescent } from "../src/dynamics/Dynamics.ts"
import * as Backend from "../src/runtime/Backend.ts"
import { firstStepDifference } from "../src/runtime/replay.ts"
import { resume, run } from "../src/runtime/run.ts"
import * as RunRecord from "../src/runtime/RunRecord.ts"
import { sgd } from "../src/solvers/optimizers.ts"
import { initialState, outerSteps } from "../src/solvers/outerLoop.ts"
import * as Solver from "../src/solvers/Solver.ts"
import { smoothProblem } from "./support/smoothProblem.ts"
import { vectorValue } from "./support/tf.ts"
import { scratchDir } from "./support/scratch.ts"

const scratch = scratchDir("warm")

layer(Layer.merge(Backend.layer("cpu"), NodeServices.layer))("warm start", (it) => {
  it.effect("passes y_K of step t as the constant y_0 of step t + 1, whose hypergradient is the fixed-init one from there", () =>
    Effect.gen(function*() {
      const { problem, x0, y0 } = smoothProblem({ dimX: 3, dimY: 5 })
      const fixed = Solver.make(gradientDescent({ lr: 0.3 })).pipe(Solver.take(6))
      const warm = fixed.pipe(Solver.warmStart)
      const optimizers = { x: sgd(0.1), z: sgd(0.1) }
      const steps = yield* outerSteps(warm, problem, initialState(x0, y0, optimizers), optimizers, Random.key(0)).pipe(
        Stream.take(3),
        Stream.mapEffect((step) =>
          Effect.gen(function*() {
            // The same step with the fixed-init solver from this step's y_0: the same hypergradient.
            const reference = yield* Solver.solve(fixed, problem, step.before.x, step.before.z)
            return {
              y0: vectorValue(step.before.z),
              yK: vectorValue(step.solution.y),
              next: vectorValue(step.after.z),
              gradX: vectorValue(step.solution.gradX),
              gradZ: vectorValue(step.solution.gradZ),
              reference: vectorValue(reference.gradX)
            }
          })
        ),
        Stream.runCollect
      )
      assert.deepStrictEqual(steps[0]!.y0, vectorValue(y0))
      for (const [t, step] of steps.entries()) {
        assert.deepStrictEqual(step.next, step.yK, `step ${t} hands on its y_K`)
        if (t > 0) assert.deepStrictEqual(step.y0, steps[t - 1]!.yK, `step ${t} starts from step ${t - 1}'s y_K`)
        assert.deepStrictEqual(step.gradX, step.reference, `step ${t}`)
      }
      assert.notDeepEqual(steps[1]!.y0, steps[0]!.y0)
    }))

  it.effect("survives checkpoint and resume bit for bit, and run.json records it", () =>
    Effect.gen(function*() {
      const request = { task: "quadratic", method: "rhg", seed: 4, settings: { dimX: 4, dimY: 6, outerSteps: 9, innerSteps: 5, warmStart: true } }
      const dir = path.join(scratch, "interrupted")
      yield* Effect.exit(run({ ...request, out: dir, checkpointEvery: 3, onStep: (r) => (r.t === 4 ? Effect.die("simulated crash") : Effect.void) }))
      const resumed = yield* resume({ dir })
      assert.strictEqual(resumed.resumedFrom, 3)
      const whole = yield* run({ ...request, out: path.join(scratch, "whole"), checkpointEvery: 0 })
      const [a, b] = [yield* RunRecord.read(dir), yield* RunRecord.read(whole.runDir)]
      assert.isUndefined(firstStepDifference(a.steps, b.steps))
      assert.strictEqual(a.info.config["warmStart"], true)
      // Without warm start the same run differs: the check can fail.
      const cold = yield* run({ ...request, settings: { ...request.settings, warmStart: false }, out: path.join(scratch, "cold"), checkpointEvery: 0 })
      assert.isDefined(firstStepDifference((yield* RunRecord.read(cold.runDir)).steps, b.steps))
    }))

  it.effect("is refused, saying why, for a method that learns its initialization z", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(run({ task: "quadratic", method: "iaptt-gm", seed: 0, settings: { warmStart: true }, out: path.join(scratch, "refused") }))
      assert.strictEqual(error._tag, "InvalidConfig")
      assert.include(error.message, "warmStart")
      assert.include(error.message, "auxiliary-init")
      // SOBA and AmIGO are warm by construction: a cold start is refused, saying so.
      for (const method of ["soba", "amigo"]) {
        const cold = yield* Effect.flip(run({ task: "quadratic", method, seed: 0, settings: { warmStart: false }, out: path.join(scratch, `cold-${method}`) }))
        assert.include(cold.message, `${method} always carries y and its adjoint v`)
      }
      const solver = Solver.make(gradientDescent({ lr: 0.3 })).pipe(Solver.take(3))
      // @ts-expect-error: warm start takes auxiliary-init's place; the two do not compose.
      solver.pipe(Solver.auxiliaryInit, Solver.warmStart)
      // @ts-expect-error: nor the other way round.
      solver.pipe(Solver.warmStart, Solver.auxiliaryInit)
    }))
})
