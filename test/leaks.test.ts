/**
 * No tensor outlives its outer step: over 1000 outer steps the number of live tfjs tensors (and
 * bytes) after each step is the same, for the paper's method and for the other kinds of strategy
 * (full reverse with a hand-written VJP, recomputing reverse, implicit CG).
 */
import { NodeServices } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Layer, Schema, Stream } from "effect"
import * as Random from "../src/domain/Random.ts"
import { Rng } from "../src/domain/Rng.ts"
import { tensorScope } from "../src/domain/tensors.ts"
import { gradientDescent } from "../src/dynamics/Dynamics.ts"
import * as Backend from "../src/runtime/Backend.ts"
import { iapttGm, ls } from "../src/solvers/methods.ts"
import { sgd } from "../src/solvers/optimizers.ts"
import { initialState, outerSteps } from "../src/solvers/outerLoop.ts"
import { reverse } from "../src/solvers/reverse.ts"
import * as Solver from "../src/solvers/Solver.ts"
import { toyNonconvex } from "../src/tasks/toyNonconvex.ts"
import { smoothProblem } from "./support/smoothProblem.ts"

/**
 * Live tensors and bytes after each of `steps` outer steps. The loop releases each step when the next
 * is pulled; the last one belongs to the enclosing scope, as in a run.
 */
const liveAfterEachStep = (
  solver: Solver.Bounded,
  problem: Parameters<typeof outerSteps>[1],
  x0: tf.Tensor,
  z0: tf.Tensor,
  optimizers: Parameters<typeof outerSteps>[3],
  steps: number
) =>
  outerSteps(solver, problem, initialState(x0, z0, optimizers), optimizers, Random.key(0)).pipe(
    Stream.take(steps),
    Stream.map(() => tf.memory()),
    Stream.runCollect,
    Effect.map((all) => ({ tensors: all.map((m) => m.numTensors), bytes: all.map((m) => m.numBytes) })),
    tensorScope
  )

const assertFlat = (live: { tensors: ReadonlyArray<number>; bytes: ReadonlyArray<number> }, what: string) => {
  // From the second step on, each step releases the previous one: the counts must not move.
  const [first, ...rest] = live.tensors.slice(1)
  assert.deepStrictEqual(new Set(rest), new Set([first]), `${what}: live tensors per step vary`)
  assert.strictEqual(Math.max(...live.bytes.slice(1)), Math.min(...live.bytes.slice(1)), `${what}: live bytes per step vary`)
}

layer(Layer.merge(Backend.layer("cpu"), NodeServices.layer))("tensor leaks", (it) => {
  it.effect("IAPTT-GM on toy-nonconvex: the same live tensors after each of 1000 outer steps, none after the run", () =>
    Effect.gen(function*() {
      const before = tf.memory().numTensors
      yield* Effect.gen(function*() {
        const settings = yield* Schema.decodeUnknownEffect(toyNonconvex.settings)({ innerSteps: 4, innerLr: 0.05 })
        const instance = yield* toyNonconvex.make(settings)
        const solver = iapttGm.build(settings, {})
        const live = yield* liveAfterEachStep(solver, instance.problem, instance.x0, instance.y0, instance.optimizers, 1000)
        assertFlat(live, "iaptt-gm")
      }).pipe(Effect.scoped, tensorScope, Effect.provide(Rng.layer(0)), Effect.orDie)
      assert.strictEqual(tf.memory().numTensors, before)
    }))

  it.effect("hand-written-VJP reverse, checkpointed reverse and CG: flat over 300 outer steps each", () =>
    Effect.gen(function*() {
      const before = tf.memory().numTensors
      yield* Effect.gen(function*() {
        const { problem, x0, y0 } = smoothProblem({ dimX: 3, dimY: 5 })
        const optimizers = { x: sgd(0.01), z: sgd(0.01) }
        const gd = Solver.make(gradientDescent({ lr: 0.2 })).pipe(Solver.take(6))
        const solvers = {
          rhg: gd,
          "ia-gm, checkpoint every 2": gd.pipe(Solver.auxiliaryInit, Solver.hypergradient(reverse({ checkpointEvery: 2 }))),
          ls: ls.build({ innerSteps: 6, innerLr: 0.2 }, { cgIters: 3 })
        }
        for (const [name, solver] of Object.entries(solvers)) {
          assertFlat(yield* liveAfterEachStep(solver, problem, x0, y0, optimizers, 300), name)
        }
      }).pipe(tensorScope)
      assert.strictEqual(tf.memory().numTensors, before)
    }))
})
