/**
 * Sampled problems (issue 17): draws that are pure functions of their position, minibatch
 * hypergradients against float64 differences of the same pipeline with its samples held, the same
 * samples in the forward stream, a checkpointed reverse pass and a resumed loop, meta-batches of
 * episodes, and structured variables.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Stream } from "effect"
import * as Blocks from "../src/domain/Blocks.ts"
import type { BilevelProblem, Episode } from "../src/domain/Problem.ts"
import * as Random from "../src/domain/Random.ts"
import { gradientDescent } from "../src/dynamics/Dynamics.ts"
import * as Backend from "../src/runtime/Backend.ts"
import { encodeBy, hypergradientAt } from "../src/solvers/metaBatch.ts"
import { sgd } from "../src/solvers/optimizers.ts"
import { initialState, outerSteps, stepKey } from "../src/solvers/outerLoop.ts"
import { reverse } from "../src/solvers/reverse.ts"
import * as Solver from "../src/solvers/Solver.ts"
import { ridgeData, ridgePipeline, ridgeProblem } from "./support/minibatchRidge.ts"
import { smoothProblem } from "./support/smoothProblem.ts"
import { vectorValue } from "./support/tf.ts"

const relativeError = (a: ReadonlyArray<number>, b: ReadonlyArray<number>) =>
  Math.hypot(...a.map((ai, i) => ai - b[i]!)) / Math.max(Math.hypot(...b), 1e-12)

const draws = (key: Random.Key, n: number) => {
  const source = Random.random(key)
  return Array.from({ length: n }, source.uniform)
}

/** The host values of a solution's gradients and k̄s; its tensors released. */
const read = (solution: Solver.Solution) => {
  const result = { x: vectorValue(solution.gradX), z: vectorValue(solution.gradZ), kbar: solution.kbar, kbars: solution.kbars }
  tf.dispose([solution.gradX, solution.gradZ, solution.y])
  return result
}

describe("Random: a draw is a pure function of its position", () => {
  it("the same path gives the same draws, however and in whatever order it is reached", () => {
    const root = Random.key(3)
    const direct = draws(Random.path(root, 7, "lower", 2), 5)
    const stepwise = draws(Random.foldIn(Random.foldIn(Random.foldIn(root, 7), "lower"), 2), 5)
    draws(Random.path(root, 8, "lower", 2), 100) // other positions drawn in between change nothing
    assert.deepStrictEqual(stepwise, direct)
    assert.deepStrictEqual(draws(Random.path(root, 7, "lower", 2), 5), direct)
  })

  it("different seeds, steps, purposes and indices give different, uniform-looking draws", () => {
    const root = Random.key(3)
    const keys = [Random.key(4), Random.path(root, 8, "lower", 2), Random.path(root, 7, "upper", 2), Random.path(root, 7, "lower", 3), Random.path(root, 2, "lower", 7)]
    const reference = draws(Random.path(root, 7, "lower", 2), 4)
    for (const key of keys) assert.notDeepEqual(draws(key, 4), reference)
    // First draws of 4000 sibling keys: a histogram over 10 bins within 5σ of uniform.
    const counts = Array.from({ length: 10 }, () => 0)
    for (let k = 0; k < 4000; k++) counts[Math.floor(draws(Random.path(root, "lower", k), 1)[0]! * 10)]! += 1
    for (const count of counts) assert.isBelow(Math.abs(count - 400), 5 * Math.sqrt(400 * 0.9), counts.join(", "))
  })

  it("refuses an index that is not a non-negative integer", () => {
    assert.throws(() => Random.foldIn(Random.key(0), -1), /not a non-negative integer/)
    assert.throws(() => Random.foldIn(Random.key(0), 1.5), /not a non-negative integer/)
  })
})

layer(Backend.layer("cpu"))("sampled problems", (it) => {
  const data = ridgeData({ n: 40, m: 30, d: 4, lowerBatch: 5, upperBatch: 6 })
  const K = 12
  const lr = 0.1
  const rhg = Solver.make(gradientDescent({ lr })).pipe(Solver.take(K))

  it.effect("a minibatch RHG hypergradient matches float64 central differences of the same pipeline, samples held", () =>
    Effect.gen(function*() {
      const problem = ridgeProblem(data)
      const key = stepKey(Random.key(5), 3)
      const x = [0.1, -0.4, 0.3, 0.8]
      const gradient = read(yield* Solver.solve(rhg, problem, tf.tensor1d(x), tf.zeros([data.d]), key)).x
      const pipeline = ridgePipeline(data, key, K, lr)
      const h = 1e-5
      const expected = x.map((_, j) => {
        const at = (t: number) => pipeline(x.map((xi, i) => (i === j ? xi + t : xi)))
        return (at(h) - at(-h)) / (2 * h)
      })
      assert.isBelow(relativeError(gradient, expected), 1e-4, `${gradient} vs ${expected}`)
      // Another key draws other minibatches, and so another hypergradient.
      const other = ridgePipeline(data, stepKey(Random.key(5), 4), K, lr)
      assert.notStrictEqual(other(x), pipeline(x))
    }))

  it.effect("the forward stream and a checkpointed reverse pass see the same minibatch at each step", () =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      const problem = ridgeProblem(data, (drawn) => seen.push(JSON.stringify(drawn)))
      const key = stepKey(Random.key(1), 0)
      const x = tf.tensor1d([0.2, 0.1, -0.3, 0.5])
      const y0 = tf.zeros([data.d])
      yield* Solver.lowerSolution(rhg, problem, x, y0, key)
      const forward = new Set(seen)
      assert.strictEqual(forward.size, K, "one distinct draw per LL step")
      seen.length = 0
      const plain = read(yield* Solver.solve(rhg, problem, x, y0, key))
      const checkpointed = read(yield* Solver.solve(rhg.pipe(Solver.hypergradient(reverse({ checkpointEvery: 4 }))), problem, x, y0, key))
      const reverseDraws = new Set(seen)
      // Forward steps, recomputed segments and VJPs regenerate the forward's K draws; the UL adds its own.
      assert.strictEqual(reverseDraws.size, K + 1)
      for (const drawn of forward) assert.isTrue(reverseDraws.has(drawn))
      assert.isBelow(relativeError(checkpointed.x, plain.x), 1e-6)
    }))

  it.effect("a loop resumed from step 3's state draws, and steps, exactly as the uninterrupted one (bit for bit)", () =>
    Effect.gen(function*() {
      const problem = ridgeProblem(data)
      const optimizers = { x: sgd(0.5), z: sgd(0.5) }
      const key = Random.key(9)
      const xs = (from: ReturnType<typeof initialState>, steps: number) =>
        outerSteps(rhg, problem, from, optimizers, key).pipe(
          Stream.take(steps),
          Stream.map((step) => ({ x: vectorValue(step.after.x), state: step.after })),
          Stream.runCollect
        )
      // As a checkpoint restores it: x_t on the host (sgd keeps no state) and the step index t.
      const at = (x: ReadonlyArray<number>, t: number) => ({ ...initialState(tf.tensor1d([...x]), tf.zeros([data.d]), optimizers), t })
      const whole = (yield* xs(at([0, 0, 0, 0], 0), 6)).map((s) => s.x)
      const first = yield* xs(at([0, 0, 0, 0], 0), 3)
      const resumed = yield* xs(at(first[2]!.x, 3), 3)
      assert.deepStrictEqual([...first, ...resumed].map((s) => s.x), whole)
      const restarted = yield* xs(at(first[2]!.x, 0), 3)
      assert.notDeepEqual(restarted.map((s) => s.x), whole.slice(3), "keys restarted at t = 0 draw other samples")
    }))

  it.effect("a meta-batch with PTT gives the mean of its episodes' hypergradients, each with its own k̄", () =>
    Effect.gen(function*() {
      const pool = [7, 8, 9, 10, 11].map((seed) => smoothProblem({ dimX: 3, dimY: 5, seed }).problem)
      const B = 4
      const chosen: Array<number> = []
      const metaBatch: BilevelProblem = {
        ...pool[0]!,
        episodes: (random) =>
          Array.from({ length: B }, () => {
            const i = random.int(0, pool.length - 1)
            chosen.push(i)
            return { problem: pool[i]! } satisfies Episode
          })
      }
      const iapttGm = Solver.make(gradientDescent({ lr: 0.3 })).pipe(Solver.auxiliaryInit, Solver.take(15), Solver.truncatePessimistic)
      const x = tf.tensor1d([0.3, -0.2, 0.5])
      const z = tf.tensor1d([0.1, 0, -0.1, 0.2, 0])
      const key = stepKey(Random.key(2), 0)
      const batch = read(yield* hypergradientAt(iapttGm, metaBatch, x, z, key))
      const singles: Array<ReturnType<typeof read>> = []
      for (const i of chosen) singles.push(read(yield* Solver.solve(iapttGm, pool[i]!, x, z)))
      const mean = (pick: (s: ReturnType<typeof read>) => ReadonlyArray<number>) =>
        pick(singles[0]!).map((_, j) => singles.reduce((sum, s) => sum + pick(s)[j]!, 0) / B)
      assert.isBelow(relativeError(batch.x, mean((s) => s.x)), 1e-6)
      assert.isBelow(relativeError(batch.z, mean((s) => s.z)), 1e-6)
      assert.deepStrictEqual(batch.kbars, singles.map((s) => s.kbar))
      assert.isAbove(new Set(batch.kbars).size, 1, `episodes with different k̄: ${batch.kbars}`)
      // The episodes are drawn from the step's key: the same key draws the same ones.
      const again = chosen.splice(0)
      read(yield* hypergradientAt(iapttGm, metaBatch, x, z, key))
      assert.deepStrictEqual(chosen.slice(B), [])
      assert.deepStrictEqual(chosen, again.slice(0, B))
    }))

  it.effect("an episode's encoder runs once and is pulled back once, and gives the hypergradient of x ↦ problem(Mx)", () =>
    Effect.gen(function*() {
      const { problem } = smoothProblem({ dimX: 3, dimY: 5, seed: 4 })
      const m = tf.tensor2d([1, 0.5, 0, -0.3, 2, 0.1, 0.2, 0, 1, 0.4, -1, 0.3], [3, 4]) // φ = M x, x ∈ R⁴
      const phi = (x: tf.Tensor) => tf.reshape(tf.matMul(m, tf.reshape(x, [4, 1])), [3])
      let forward = 0
      let pulled = 0
      const encoded: BilevelProblem = {
        ...problem,
        episodes: () => [{
          problem,
          encode: (x) => {
            forward++
            return { value: phi(x), vjp: (c) => (pulled++, tf.reshape(tf.matMul(tf.transpose(m), tf.reshape(c, [3, 1])), [4])) }
          }
        }]
      }
      const direct: BilevelProblem = {
        lower: (x, y) => problem.lower(phi(x), y),
        upper: (x, y) => problem.upper(phi(x), y)
      }
      const x = tf.tensor1d([0.2, -0.1, 0.4, 0.3])
      const y0 = tf.zeros([5])
      const solver = Solver.make(gradientDescent({ lr: 0.3 })).pipe(Solver.take(10))
      const viaEncoder = read(yield* hypergradientAt(solver, encoded, x, y0, Random.key(0)))
      assert.strictEqual(forward, 1)
      assert.strictEqual(pulled, 1)
      const autodiffEncoder = read(yield* hypergradientAt(solver, { ...problem, episodes: () => [{ problem, encode: encodeBy(phi) }] }, x, y0, Random.key(0)))
      const expected = read(yield* Solver.solve(solver, direct, x, y0)).x
      assert.isBelow(relativeError(viaEncoder.x, expected), 1e-5)
      assert.isBelow(relativeError(autodiffEncoder.x, expected), 1e-5)
    }))

  it.effect("a two-block x gives the hypergradient of its flat equivalent", () =>
    Effect.gen(function*() {
      // f = ½‖y − W u‖² + ½ s ‖y‖², F = ½‖y − t‖², with x = (W ∈ R^{3×2}, u ∈ R², s): blocks, or indices into one vector.
      const layout = Blocks.layout({ w: [3, 2], u: [2, 1], s: [1] })
      const t = tf.tensor1d([1, -1, 0.5])
      const lower = (w: tf.Tensor, u: tf.Tensor, s: tf.Tensor, y: tf.Tensor) =>
        tf.add(tf.mul(0.5, tf.sum(tf.square(tf.sub(y, tf.reshape(tf.matMul(w, u), [3]))))), tf.mul(0.5, tf.mul(tf.sum(s), tf.sum(tf.square(y)))))
      const upper = (_x: tf.Tensor, y: tf.Tensor) => tf.mul(0.5, tf.sum(tf.square(tf.sub(y, t))))
      const structured: BilevelProblem = {
        lower: (x, y) => {
          const { s, u, w } = Blocks.unflatten(layout, x)
          return lower(w!, u!, s!, y)
        },
        upper
      }
      const flat: BilevelProblem = {
        lower: (x, y) => {
          const values = tf.unstack(x)
          const w = tf.reshape(tf.stack(values.slice(0, 6)), [3, 2])
          return lower(w, tf.reshape(tf.stack(values.slice(6, 8)), [2, 1]), values[8]!, y)
        },
        upper
      }
      const x = Blocks.flatten(layout, { w: tf.tensor2d([0.5, 1, -0.3, 0.2, 0.8, -1], [3, 2]), u: tf.tensor1d([1, 2]), s: tf.scalar(0.4) })
      assert.deepStrictEqual(x.shape, [layout.size])
      const solver = Solver.make(gradientDescent({ lr: 0.2 })).pipe(Solver.take(8))
      const a = read(yield* Solver.solve(solver, structured, x, tf.zeros([3])))
      const b = read(yield* Solver.solve(solver, flat, x, tf.zeros([3])))
      assert.isBelow(relativeError(a.x, b.x), 1e-6)
      assert.throws(() => Blocks.flatten(layout, { w: tf.zeros([3, 2]), u: tf.zeros([3]), s: tf.scalar(0) }), /block "u" needs 2 entries/)
    }))
})
