/**
 * Data of logistic-regression HPO: train / validation / test splits of ±1-labelled rows, either
 * synthetic (any size, a pure function of its seed) or two classes of an MNIST-format file. Values
 * are float32 (what the tensors hold), kept beside their exact float64 widening for the ground truth.
 */
import type { RandomSource } from "../../domain/Rng.ts"
import type { LabelledData } from "./exact.ts"
import type { MnistLike } from "../mnistLike.ts"

export interface LogregSplit {
  /** n × p, row-major, float32. */
  readonly features: Float32Array
  /** ±1. */
  readonly labels: Float32Array
  readonly n: number
  readonly p: number
}

export interface LogregData {
  readonly train: LogregSplit
  readonly validation: LogregSplit
  readonly test: LogregSplit
}

export interface SplitSizes {
  readonly trainSize: number
  readonly valSize: number
  readonly testSize: number
}

/** The float64 view the exact hypergradient reads (the same numbers). */
export const widen = (split: LogregSplit): LabelledData => ({
  features: Float64Array.from(split.features),
  labels: Float64Array.from(split.labels),
  n: split.n,
  p: split.p
})

/**
 * Synthetic data with a planted model: a_i ~ N(0, I/p) (so ‖a_i‖ ≈ 1 and the logistic loss is
 * 1/4-smooth whatever p), b_i = sign(a_iᵀw₀) with w₀ ~ N(0, scale²·I), each label flipped with
 * probability `noise` (so regularization matters). Draw order: w₀, then the rows of train,
 * validation and test in turn, each row's features then its flip.
 */
export const synthetic = (
  rng: RandomSource,
  options: SplitSizes & { readonly features: number; readonly noise: number; readonly scale: number }
): LogregData => {
  const p = options.features
  const planted = Array.from({ length: p }, () => options.scale * rng.normal())
  const split = (n: number): LogregSplit => {
    const features = new Float32Array(n * p)
    const labels = new Float32Array(n)
    for (let i = 0; i < n; i++) {
      let margin = 0
      for (let j = 0; j < p; j++) {
        const a = Math.fround(rng.normal() / Math.sqrt(p))
        features[i * p + j] = a
        margin += a * planted[j]!
      }
      const flip = rng.uniform() < options.noise
      labels[i] = (margin >= 0) !== flip ? 1 : -1
    }
    return { features, labels, n, p }
  }
  return { train: split(options.trainSize), validation: split(options.valSize), test: split(options.testSize) }
}

/**
 * Two classes of an MNIST-format file, `positive` labelled +1 and `negative` −1, each image scaled
 * to unit norm (so the loss is 1/4-smooth, as the synthetic data): one permutation of that pair's
 * examples, cut into train, validation and test in that order. The caller checks the sizes fit.
 */
export const classPair = (
  source: MnistLike,
  rng: RandomSource,
  options: SplitSizes & { readonly positive: number; readonly negative: number }
): LogregData => {
  const p = source.rows * source.cols
  const pair = Int32Array.from(
    Array.from(source.labels.keys()).filter((i) => source.labels[i] === options.positive || source.labels[i] === options.negative)
  )
  const order = rng.permutation(pair.length)
  let next = 0
  const split = (n: number): LogregSplit => {
    const features = new Float32Array(n * p)
    const labels = new Float32Array(n)
    for (let i = 0; i < n; i++) {
      const index = pair[order[next++]!]!
      const image = source.images.subarray(index * p, (index + 1) * p)
      const norm = Math.hypot(...image) || 1
      for (let j = 0; j < p; j++) features[i * p + j] = image[j]! / norm
      labels[i] = source.labels[index] === options.positive ? 1 : -1
    }
    return { features, labels, n, p }
  }
  return { train: split(options.trainSize), validation: split(options.valSize), test: split(options.testSize) }
}

/** How many examples of the two classes `source` holds. */
export const pairSize = (source: MnistLike, positive: number, negative: number): number =>
  source.labels.reduce((count, label) => count + (label === positive || label === negative ? 1 : 0), 0)
