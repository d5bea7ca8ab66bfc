/**
 * Compositions that cannot go wrong silently (issue 17): a never-ending inner loop and
 * auxiliary-init with a strategy that never reaches y_0 do not type-check and fail with
 * `InvalidSolver` where the types are bypassed; a strategy's failure is a typed error; the `last`
 * selection survives dynamics that pass a tensor through unchanged; schedules and per-block
 * optimizers follow their rules written out by hand.
 */
import { assert, layer } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import * as Blocks from "../src/domain/Blocks.ts"
import type { BilevelProblem } from "../src/domain/Problem.ts"
import { type Dynamics, gradientDescent, lowerGradient } from "../src/dynamics/Dynamics.ts"
import { take } from "../src/dynamics/iterates.ts"
import { decreasing } from "../src/dynamics/schedules.ts"
import * as Backend from "../src/runtime/Backend.ts"
import { firstOrder } from "../src/solvers/firstOrder.ts"
import { implicit, stationarity } from "../src/solvers/implicit.ts"
import { conjugateGradient } from "../src/solvers/linearSolvers.ts"
import { addDecayedWeights, adam, chain, type OptState, partition, scale, sgd, step } from "../src/solvers/optimizers.ts"
import { reverse } from "../src/solvers/reverse.ts"
import * as Solver from "../src/solvers/Solver.ts"
import { pulledTowards, trajectory } from "./support/lowerLevel.ts"
import { vectorValue } from "./support/tf.ts"

const ls = implicit(stationarity, conjugateGradient({ iterations: 5 }))

/**
 * GD whose auxiliary state is a step scale c made at step 0 and passed through unchanged after:
 * y' = y − α c ∇_y f. A selection that released c with the iterate that made it would break step 2.
 */
const passThrough = (lr: number): Dynamics => ({
  name: "pass-through",
  init: (y0) => [y0, tf.scalar(0)],
  step: (problem, x, [y, c], k) => {
    const scale = k === 0 ? tf.scalar(1) : c!
    return [tf.sub(y!, tf.mul(lr, tf.mul(scale, lowerGradient(problem, x, y!, k)))), scale]
  }
})

layer(Backend.layer("cpu"))("compositions that cannot go wrong silently", (it) => {
  const problem = pulledTowards(2)
  // Made when a test runs, once the backend layer is up.
  const at = () => [tf.tensor1d([1]), tf.tensor1d([0])] as const

  it.effect("a solver whose inner loop never ends is refused by the types and by solve", () =>
    Effect.gen(function*() {
      const [x, y0] = at()
      const endless = Solver.make(gradientDescent({ lr: 0.5 }))
      // @ts-expect-error: no take and no stop — not a `Bounded` solver.
      const error = yield* Effect.flip(Solver.solve(endless, problem, x, y0))
      assert.strictEqual(error._tag, "InvalidSolver")
      assert.include(error.message, "never ends")
      assert.include(error.message, "Solver.take(K)")
      const stopped = Solver.make(gradientDescent({ lr: 0.5 })).pipe(Solver.stopAtResidual({ tolerance: 1e-3, alpha: 0.5 }))
      const solution = yield* Solver.solve(stopped, problem, x, y0)
      assert.isAbove(solution.cost.innerSteps, 0)
    }))

  it.effect("auxiliary-init with a strategy that never reaches y_0 is refused; first-order's approximation is a typed choice", () =>
    Effect.gen(function*() {
      const [x, y0] = at()
      const descent = Solver.make(gradientDescent({ lr: 0.5 })).pipe(Solver.take(5))
      // @ts-expect-error: implicit strategies give no dF/dy_0 (`none`), so z would learn from a silent zero.
      descent.pipe(Solver.auxiliaryInit, Solver.hypergradient(ls))
      // @ts-expect-error: nor does truncated reverse.
      descent.pipe(Solver.hypergradient(reverse({ lastM: 2 })), Solver.auxiliaryInit)
      // Built around the types (a dynamic choice, plain JS): solve refuses it.
      const bypassed = Solver.auxiliaryInit(descent.pipe(Solver.hypergradient(ls)) as unknown as Solver.Solver<true, "fixed", "exact">)
      const error = yield* Effect.flip(Solver.solve(bypassed, problem, x, y0))
      assert.strictEqual(error._tag, "InvalidSolver")
      assert.include(error.message, "never computes")
      // First-order's dF/dy_0 ≈ ∇_y F(x, y_K) is declared `approximate` and accepted.
      const fo = yield* Solver.solve(descent.pipe(Solver.hypergradient(firstOrder), Solver.auxiliaryInit), problem, x, y0)
      assert.notStrictEqual(vectorValue(fo.gradZ)[0], 0)
    }))

  it.effect("strategies declare exactness and what they give for dF/dy_0", () =>
    Effect.sync(() => {
      assert.deepStrictEqual([reverse().exact, reverse().initGradient], [true, "exact"])
      assert.deepStrictEqual([reverse({ checkpointEvery: 3 }).exact, reverse({ checkpointEvery: 3 }).initGradient], [true, "exact"])
      assert.deepStrictEqual([reverse({ lastM: 3 }).exact, reverse({ lastM: 3 }).initGradient], [false, "none"])
      assert.deepStrictEqual([ls.exact, ls.initGradient], [false, "none"])
      assert.deepStrictEqual([firstOrder.exact, firstOrder.initGradient], [false, "approximate"])
    }))

  it.effect("CG on an indefinite system fails with HypergradientFailed in the error channel", () =>
    Effect.gen(function*() {
      const [x, y0] = at()
      // f = ½(y₁² − y₂²) − x y₁: its Hessian diag(1, −1) is indefinite everywhere.
      const saddle: BilevelProblem = {
        lower: (xx, y) => tf.sub(tf.mul(0.5, tf.sum(tf.mul(tf.tensor1d([1, -1]), tf.square(y)))), tf.mul(tf.sum(xx), tf.sum(tf.mul(tf.tensor1d([1, 0]), y)))),
        upper: (_x, y) => tf.sum(tf.square(tf.sub(y, tf.tensor1d([1, 1]))))
      }
      const solver = Solver.make(gradientDescent({ lr: 0.1 })).pipe(Solver.take(3), Solver.hypergradient(ls))
      const error = yield* Effect.flip(Solver.solve(solver, saddle, x, tf.tensor1d([0.5, 0.5])))
      assert.strictEqual(error._tag, "HypergradientFailed")
      assert.include(error.message, "indefinite")
      // A positive-definite system solves.
      const fine = yield* Solver.solve(Solver.make(gradientDescent({ lr: 0.5 })).pipe(Solver.take(30), Solver.hypergradient(ls)), problem, x, y0)
      // y* = x, F = −(x − 2)²: dF/dx = −2(x − 2) = 2 at x = 1.
      assert.approximately(vectorValue(fine.gradX)[0]!, 2, 1e-4)
    }))

  it.effect("an op whose second order tfjs gets wrong fails the strategy with a typed error naming it", () =>
    Effect.gen(function*() {
      const [x, y0] = at()
      // tf.logSoftmax's gradient cannot be differentiated again (docs/second-order.md).
      const logSoftmaxLoss: BilevelProblem = {
        lower: (xx, y) => tf.add(tf.neg(tf.sum(tf.logSoftmax(tf.reshape(tf.concat([y, tf.mul(y, xx)]), [1, -1])))), tf.sum(tf.square(y))),
        upper: (_x, y) => tf.sum(tf.square(y))
      }
      const solver = Solver.make(gradientDescent({ lr: 0.1 })).pipe(Solver.take(2))
      const error = yield* Effect.flip(Solver.solve(solver, logSoftmaxLoss, x, y0))
      assert.strictEqual(error._tag, "HypergradientFailed")
      assert.include(error.message, "tf.logSoftmax")
    }))

  it.effect("the last selection keeps a tensor that later iterates pass through, under first-order and implicit strategies", () =>
    Effect.gen(function*() {
      const [x, y0] = at()
      for (const strategy of [firstOrder, ls]) {
        const kept = yield* Solver.solve(Solver.make(passThrough(0.5)).pipe(Solver.take(6), Solver.hypergradient(strategy)), problem, x, y0)
        const plain = yield* Solver.solve(Solver.make(gradientDescent({ lr: 0.5 })).pipe(Solver.take(6), Solver.hypergradient(strategy)), problem, x, y0)
        assert.deepStrictEqual(vectorValue(kept.gradX), vectorValue(plain.gradX), strategy.name)
        assert.deepStrictEqual(vectorValue(kept.y), vectorValue(plain.y), strategy.name)
      }
    }))

  it.effect("a decreasing step η_k = β/(γ + k) takes the steps written out by hand", () =>
    Effect.gen(function*() {
      // f = ½(y − x)² at x = 0: y_{k+1} = (1 − η_k) y_k.
      const ys = yield* trajectory(problem, gradientDescent({ lr: decreasing({ beta: 1, gamma: 2 }) }), 0, 1, take(3))
      const expected = [1]
      for (let k = 0; k < 3; k++) expected.push(expected[k]! * (1 - 1 / (2 + k)))
      assert.lengthOf(ys, 4)
      ys.forEach((y, k) => assert.approximately(y, expected[k]!, 1e-6))
    }))

  it.effect("partition steps each block with its own transformation (decay on one block, Adam on another)", () =>
    Effect.sync(() => {
      const layout = Blocks.layout({ conv: [2], scale: [1] })
      const optimizer = partition(layout, { conv: chain(addDecayedWeights(0.1), scale(-0.5)) }, adam(0.01))
      const params = tf.tensor1d([1, -2, 3])
      const gradient = tf.tensor1d([0.2, 0.4, -1])
      const [next] = step(optimizer, params, gradient, optimizer.init(params) as OptState)
      // conv: p − 0.5 (g + 0.1 p); scale: Adam's first step moves by lr against the gradient's sign.
      const expected = [1 - 0.5 * (0.2 + 0.1), -2 - 0.5 * (0.4 - 0.2), 3 + 0.01]
      vectorValue(next).forEach((v, i) => assert.approximately(v, expected[i]!, 1e-6))
      assert.throws(() => partition(layout, { bn: sgd(1) }, sgd(1)), /no block named bn/)
    }))
})
