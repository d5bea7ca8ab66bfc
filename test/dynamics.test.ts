/**
 * Each LL dynamics and combinator against iterates computed by hand.
 */
import { assert, layer } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Stream } from "effect"
import { bda, fista, gradientDescent, nesterovMomentum } from "../src/dynamics/Dynamics.ts"
import { iterateY } from "../src/dynamics/Iterate.ts"
import { stopAtResidual, stopAtStep, take, unroll } from "../src/dynamics/iterates.ts"
import { last, minResidual, pessimistic } from "../src/dynamics/selection.ts"
import * as Backend from "../src/runtime/Backend.ts"
import { atPoint, pulledTowards, scripted, trajectory } from "./support/lowerLevel.ts"
import { vectorValue } from "./support/tf.ts"

const close = (actual: ReadonlyArray<number>, expected: ReadonlyArray<number>, tolerance = 1e-6) => {
  assert.strictEqual(actual.length, expected.length)
  actual.forEach((a, i) => assert.approximately(a, expected[i]!, tolerance, `element ${i}`))
}

layer(Backend.layer("cpu"))("LL dynamics", (it) => {
  it.effect("projected gradient descent: y_k = x + (1 − α)^k (y_0 − x), clipped to Y", () =>
    Effect.gen(function*() {
      const ys = yield* trajectory(pulledTowards(0), gradientDescent({ lr: 0.5 }), 2, 10, take(4))
      close(ys, [10, 6, 4, 3, 2.5])
      const boxed = { ...pulledTowards(0), projectY: (y: tf.Tensor) => tf.clipByValue(y, -1, 7) }
      close(yield* trajectory(boxed, gradientDescent({ lr: 0.5 }), 2, 10, take(2)), [10, 6, 4])
      close(yield* trajectory(boxed, gradientDescent({ lr: 0.5 }), 20, 0, take(2)), [0, 7, 7])
    }))

  it.effect("FISTA follows the t_k recursion of paper Eq. 9 (standard rule)", () =>
    Effect.gen(function*() {
      const alpha = 0.3
      const x = 1
      const expected = [4]
      let [y, u, t] = [4, 4, 1]
      for (let k = 0; k < 6; k++) {
        const next = u - alpha * (u - x)
        const tNext = (1 + Math.sqrt(1 + 4 * t * t)) / 2
        u = next + ((t - 1) / tNext) * (next - y)
        y = next
        t = tNext
        expected.push(y)
      }
      close(yield* trajectory(pulledTowards(0), fista({ lr: alpha }), x, 4, take(6)), expected, 1e-5)
    }))

  it.effect("Nesterov momentum as PyTorch writes it: v' = μv + g, y' = y − α(g + μv')", () =>
    Effect.gen(function*() {
      const [alpha, mu, x] = [0.2, 0.9, -1]
      const expected = [3]
      let [y, v] = [3, 0]
      for (let k = 0; k < 5; k++) {
        const g = y - x
        v = mu * v + g
        y = y - alpha * (g + mu * v)
        expected.push(y)
      }
      close(yield* trajectory(pulledTowards(0), nesterovMomentum({ lr: alpha, momentum: mu }), x, 3, take(5)), expected, 1e-5)
    }))

  it.effect("BDA aggregates μ_k s ∇F + (1 − μ_k) s ∇f with μ_k = μ_0/(k + 1)", () =>
    Effect.gen(function*() {
      const [mu0, s, x, c] = [0.5, 0.1, 1, 3]
      const expected = [0]
      let y = 0
      for (let k = 0; k < 4; k++) {
        const mu = mu0 / (k + 1)
        y = y - (mu * s * (-2 * (y - c)) + (1 - mu) * s * (y - x))
        expected.push(y)
      }
      close(yield* trajectory(pulledTowards(c), bda({ mu0, upperLr: s, lowerLr: s }), x, 0, take(4)), expected, 1e-5)
    }))
})

layer(Backend.layer("cpu"))("iterate-stream combinators", (it) => {
  it.effect("take(K) emits y_0 … y_K and runs exactly K steps", () =>
    Effect.gen(function*() {
      const { calls, dynamics } = scripted([0, 1, 2, 3, 4, 5, 6, 7])
      close(yield* trajectory(pulledTowards(0), dynamics, 0, 0, take(3)), [0, 1, 2, 3])
      assert.strictEqual(calls.steps, 3)
    }))

  it.effect("stopAtResidual ends at the first ‖R_α‖ ≤ ε, that iterate included", () =>
    Effect.gen(function*() {
      // y_k = 0.5^k, R_α = α (y_k − x) = 0.5^(k+1): first ≤ 0.01 at k = 6.
      const ys = yield* trajectory(pulledTowards(0), gradientDescent({ lr: 0.5 }), 0, 1, (s) =>
        s.pipe(take(50), stopAtResidual({ tolerance: 0.01, alpha: 0.5 })))
      assert.strictEqual(ys.length, 7)
      assert.approximately(ys[6]!, 0.5 ** 6, 1e-7)
    }))

  it.effect("stopAtStep ends once ‖y_k − y_{k−1}‖ ≤ ε", () =>
    Effect.gen(function*() {
      // Steps are 0.5^k: first ≤ 0.05 is y_5 − y_4 = 0.03125.
      const ys = yield* trajectory(pulledTowards(0), gradientDescent({ lr: 0.5 }), 0, 1, (s) => s.pipe(take(50), stopAtStep(0.05)))
      assert.strictEqual(ys.length, 6)
    }))

  it.effect("the stream is lazy: nothing runs until pulled, and a cut stream stops stepping", () =>
    Effect.gen(function*() {
      const { calls, dynamics } = scripted([0, 1, 2, 3])
      const stream = unroll(dynamics, tf.tensor1d([0]))
      assert.strictEqual(calls.steps, 0)
      yield* atPoint(pulledTowards(0), 0, Stream.runDrain(Stream.take(stream, 2)))
      assert.strictEqual(calls.steps, 1)
    }))
})

layer(Backend.layer("cpu"))("selections", (it) => {
  const select = (selection: typeof last, c: number, retain = true) =>
    atPoint(
      pulledTowards(c),
      0,
      selection.select(take(5)(unroll(gradientDescent({ lr: 0.5 }), tf.tensor1d([1]))), retain)
    )

  it.effect("PTT picks k̄ = argmax_{k ∈ 1..K} F(x, y_k)", () =>
    Effect.gen(function*() {
      // y_k = 0.5^k = 1, .5, .25, .125, …; F = −(y − 0.3)² peaks at y_2 = 0.25.
      const trajectory = yield* select(pessimistic, 0.3)
      assert.strictEqual(trajectory.selected.k, 2)
      assert.strictEqual(trajectory.prefix.length, 3)
      assert.strictEqual(trajectory.stepsTaken, 5)
    }))

  it.effect("PTT breaks ties to the smallest k and never selects y_0", () =>
    Effect.gen(function*() {
      // c = 0.375 is equidistant from y_1 = 0.5 and y_2 = 0.25; c = 2 favours y_0 = 1, excluded.
      assert.strictEqual((yield* select(pessimistic, 0.375)).selected.k, 1)
      assert.strictEqual((yield* select(pessimistic, 2)).selected.k, 1)
    }))

  it.effect("min-residual picks argmin_k ‖R_α(x, y_k)‖, not the last iterate", () =>
    Effect.gen(function*() {
      const { dynamics } = scripted([1, 0.5, -0.1, 0.3, 0.2])
      const trajectory = yield* atPoint(
        pulledTowards(0),
        0,
        minResidual(0.5).select(take(4)(unroll(dynamics, tf.tensor1d([1]))), true)
      )
      assert.strictEqual(trajectory.selected.k, 2)
      assert.approximately(vectorValue(iterateY(trajectory.selected))[0]!, -0.1, 1e-7)
    }))

  it.effect("last keeps only y_K when the strategy needs no prefix, releasing the others as it goes", () =>
    Effect.gen(function*() {
      const before = tf.memory().numTensors
      const trajectory = yield* select(last, 0, false)
      assert.strictEqual(trajectory.selected.k, 5)
      assert.strictEqual(trajectory.prefix.length, 1)
      // x and y_0 (the caller's) and y_5 remain…
      assert.strictEqual(tf.memory().numTensors - before, 3)
      // …where a retained prefix keeps all of y_0 … y_5.
      const middle = tf.memory().numTensors
      assert.strictEqual((yield* select(last, 0, true)).prefix.length, 6)
      assert.strictEqual(tf.memory().numTensors - middle, 7)
    }))
})
