/**
 * A sampled bilevel problem evaluable in plain float64 JS: ridge regression with one learned
 * log-penalty per feature, on minibatches drawn with replacement from the position's random source,
 *
 *     f_ξ(x, y) = (1/B) Σ_{i∈ξ} ½ (a_iᵀ y − b_i)² + ½ Σ_j e^{x_j} y_j²
 *     F_ζ(x, y) = (1/B') Σ_{i∈ζ} ½ (c_iᵀ y − e_i)²
 *
 * Each draw takes the LL batch ξ first, then the UL batch ζ, from the one source it is given, so the
 * float64 mirror below regenerates exactly the samples of any (key, purpose, index).
 */
import * as tf from "@tensorflow/tfjs-core"
import type { BilevelProblem } from "../../src/domain/Problem.ts"
import * as Random from "../../src/domain/Random.ts"
import { make as makeRng, type RandomSource } from "../../src/domain/Rng.ts"

export interface RidgeData {
  readonly n: number
  readonly m: number
  readonly d: number
  readonly a: ReadonlyArray<ReadonlyArray<number>>
  readonly b: ReadonlyArray<number>
  readonly c: ReadonlyArray<ReadonlyArray<number>>
  readonly e: ReadonlyArray<number>
  readonly lowerBatch: number
  readonly upperBatch: number
}

export const ridgeData = (options: { n: number; m: number; d: number; lowerBatch: number; upperBatch: number; seed?: number }): RidgeData => {
  const rng = makeRng(options.seed ?? 11)
  const rows = (count: number) => Array.from({ length: count }, () => Array.from({ length: options.d }, rng.normal))
  const truth = Array.from({ length: options.d }, rng.normal)
  const targets = (x: ReadonlyArray<ReadonlyArray<number>>) => x.map((row) => row.reduce((s, v, j) => s + v * truth[j]!, 0) + 0.5 * rng.normal())
  const a = rows(options.n)
  const c = rows(options.m)
  return { ...options, a, b: targets(a), c, e: targets(c) }
}

/** The batches one source gives: ξ (LL) then ζ (UL), with replacement. */
export const batches = (data: RidgeData, random: RandomSource) => ({
  lower: Array.from({ length: data.lowerBatch }, () => random.int(0, data.n - 1)),
  upper: Array.from({ length: data.upperBatch }, () => random.int(0, data.m - 1))
})

/** The problem on tfjs tensors (allocated in the caller's scope), with a minibatch sampler; `log` sees each draw. */
export const ridgeProblem = (data: RidgeData, log?: (drawn: { lower: Array<number>; upper: Array<number> }) => void): BilevelProblem => {
  const a = tf.tensor2d(data.a.flat(), [data.n, data.d])
  const b = tf.tensor1d([...data.b])
  const c = tf.tensor2d(data.c.flat(), [data.m, data.d])
  const e = tf.tensor1d([...data.e])
  const loss = (rows: tf.Tensor, targets: tf.Tensor, y: tf.Tensor) =>
    tf.mean(tf.mul(0.5, tf.square(tf.sub(tf.reshape(tf.matMul(rows, tf.reshape(y, [data.d, 1])), [-1]), targets))))
  const on = (rowsA: tf.Tensor, targetsB: tf.Tensor, rowsC: tf.Tensor, targetsE: tf.Tensor): BilevelProblem => ({
    lower: (x, y) => tf.add(loss(rowsA, targetsB, y), tf.mul(0.5, tf.sum(tf.mul(tf.exp(x), tf.square(y))))),
    upper: (_x, y) => loss(rowsC, targetsE, y)
  })
  return {
    ...on(a, b, c, e),
    sample: (random) => {
      const drawn = batches(data, random)
      log?.(drawn)
      const lower = tf.tensor1d(drawn.lower, "int32")
      const upper = tf.tensor1d(drawn.upper, "int32")
      return on(tf.gather(a, lower), tf.gather(b, lower), tf.gather(c, upper), tf.gather(e, upper))
    }
  }
}

/**
 * F(x, y_K) of K minibatch GD steps (step `lr`) from y_0 = 0, in float64, with the samples of the
 * solver at `key`: step k on the draw at (key, "lower", k), F on the draw at (key, "upper", 0).
 */
export const ridgePipeline = (data: RidgeData, key: Random.Key, innerSteps: number, lr: number) => (x: ReadonlyArray<number>): number => {
  const draw = (purpose: string, index: number) => batches(data, Random.random(Random.path(key, purpose, index)))
  const residual = (row: ReadonlyArray<number>, target: number, y: ReadonlyArray<number>) => row.reduce((s, v, j) => s + v * y[j]!, 0) - target
  let y = Array.from({ length: data.d }, () => 0)
  for (let k = 0; k < innerSteps; k++) {
    const { lower } = draw("lower", k)
    const gradient = y.map((yj, j) => Math.exp(x[j]!) * yj)
    for (const i of lower) {
      const r = residual(data.a[i]!, data.b[i]!, y) / lower.length
      data.a[i]!.forEach((v, j) => (gradient[j]! += r * v))
    }
    y = y.map((yj, j) => yj - lr * gradient[j]!)
  }
  const { upper } = draw("upper", 0)
  return upper.reduce((s, i) => s + 0.5 * residual(data.c[i]!, data.e[i]!, y) ** 2, 0) / upper.length
}
