/**
 * The second-order check shared by test/secondOrder.test.ts (fixed gradients) and
 * test/secondOrderStock.test.ts (stock tfjs). For each op: two gradient-descent steps on an objective
 * built with it, Z₁ = Z₀ − α∇f(Z₀), Z₂ = Z₁ − α∇f(Z₁), then d⟨C, Z₂⟩/dZ₀ by nested `tf.grad`
 * against central differences. That derivative holds the Hessian of f at Z₀ and Z₁, i.e. the
 * gradient of each op's gradient: exactly what a hypergradient needs.
 */
import * as tf from "@tensorflow/tfjs-core"
import {
  logSoftmax,
  logSumExp,
  lqPenalty,
  sigmoidCrossEntropy,
  softmaxCrossEntropy,
  softmaxCrossEntropyPerExample
} from "../../src/tasks/losses.ts"
import { finiteDifferenceGradient, relativeError } from "./tf.ts"

/** One row of the table. */
export interface SecondOrderCase {
  readonly name: string
  /** f(Z) for Z of shape [rows, cols], built with the op under test. */
  readonly objective: (z: tf.Tensor) => tf.Scalar
  /** Z₀, row-major. */
  readonly start: ReadonlyArray<number>
  /** With tfjs 4.22's stock gradients: right, silently wrong, or throwing. */
  readonly stock: "correct" | "wrong" | "throws"
  /** With `installSecondOrderGradients`: right, or refused with `UnsupportedOp`. */
  readonly fixed: "correct" | "unsupported"
}

/**
 * Above this relative error a case is wrong. Finite differences of the fixed table stay below 3e-4;
 * every stock failure exceeds 6e-2.
 */
export const tolerance = 1e-3

/**
 * ‖autodiff − finite differences‖ / ‖finite differences‖ for d⟨C, Z₂⟩/dZ₀. Throws what tfjs throws.
 * Leaves no tensors behind unless tfjs throws mid-gradient (its tape then keeps the saved tensors).
 */
export const secondOrderError = (c: SecondOrderCase): number => {
  const z0 = tf.tensor2d([...c.start], shape)
  try {
    const outer = (z: tf.Tensor): tf.Scalar => {
      const step = (zk: tf.Tensor): tf.Tensor => tf.sub(zk, tf.mul(stepSize, tf.grad(c.objective)(zk)))
      return tf.sum(tf.mul(tf.tensor2d([...cotangent], shape), step(step(z))))
    }
    const autodiff = tf.tidy(() => tf.grad(outer)(z0).dataSync())
    return relativeError(autodiff, finiteDifferenceGradient(outer, z0, fdStep))
  } finally {
    z0.dispose()
  }
}

/** ‖tf.grad(f) − finite differences‖ / ‖finite differences‖ at Z₀: the first-order check alone. */
export const firstOrderError = (c: SecondOrderCase): number => {
  const z0 = tf.tensor2d([...c.start], shape)
  try {
    const autodiff = tf.tidy(() => tf.grad(c.objective)(z0).dataSync())
    return relativeError(autodiff, finiteDifferenceGradient(c.objective, z0, fdStep))
  } finally {
    z0.dispose()
  }
}

// Small enough to read, big enough that rows couple (softmax, max) and Hessians are not diagonal.
const rows = 3
const cols = 4
const shape: [number, number] = [rows, cols]
const size = rows * cols
// The inner step: large enough that the Hessian terms weigh in d⟨C, Z₂⟩/dZ₀, small enough that
// iterates stay in the region where each objective is smooth.
const stepSize = 0.3
// float32 central differences of an O(1) objective: rounding error ≈ 1e-7/h, truncation ≈ h².
const fdStep = 1e-2

/** A fixed-seed uniform stream (mulberry32): every run checks the same numbers. */
const uniform = (() => {
  let state = 0x5eed
  return (low: number, high: number): number => {
    state = (state + 0x6d2b79f5) | 0
    let t = Math.imul(state ^ (state >>> 15), 1 | state)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return low + (high - low) * (((t ^ (t >>> 14)) >>> 0) / 4294967296)
  }
})()

/**
 * `n` values in [low, high] farther than `margin` from every kink. A case picks the margin above the
 * distance its iterates can move (two steps of α‖∇f‖∞) plus the finite-difference step, so that no
 * point the check evaluates crosses a kink.
 */
const sample = (low: number, high: number, kinks: ReadonlyArray<number> = [], margin = 0, n = size): Array<number> =>
  Array.from({ length: n }, () => {
    for (;;) {
      const x = uniform(low, high)
      if (kinks.every((k) => Math.abs(x - k) > margin)) return x
    }
  })

/** Rows of distinct values ≥ 0.5 apart in random order: each row's argmax survives the steps. */
const separatedRows = (): Array<number> =>
  Array.from({ length: rows }, () => {
    const values = [-0.75, -0.25, 0.25, 0.75]
    for (let i = values.length - 1; i > 0; i--) {
      const j = Math.floor(uniform(0, i + 1))
      ;[values[i], values[j]] = [values[j]!, values[i]!]
    }
    return values.map((v) => v + uniform(-0.05, 0.05))
  }).flat()

const cotangent = sample(-1, 1)
const weights = sample(-1, 1)
const rowWeights = sample(-1, 1, [], 0, rows)
const gram = sample(-1, 1, [], 0, cols * cols)
const targets = sample(0, 1)
const exampleWeights = sample(0.2, 1, [], 0, rows)
// Row r's class is (3r mod 4), so that the classes differ between rows.
const oneHot = Array.from({ length: size }, (_, i) => (i % cols === (3 * Math.floor(i / cols)) % cols ? 1 : 0))

const constant = (values: ReadonlyArray<number>, dims: Array<number> = shape): tf.Tensor =>
  tf.tensor([...values], dims)
const labels = (): tf.Tensor => constant(oneHot)
/** Σ D ⊙ y with fixed random D: every entry of y reaches the objective with its own weight. */
const weighted = (y: tf.Tensor): tf.Scalar => tf.sum(tf.mul(constant(weights), y))
/** Σ_r d_r y_r for a per-row quantity y. */
const rowWeighted = (y: tf.Tensor): tf.Scalar => tf.sum(tf.mul(constant(rowWeights, [rows]), y))
/**
 * 0.2 Σ D ⊙ Z ⊙ y: for a piecewise-linear y, a non-zero Hessian that goes through y's gradient;
 * the factor keeps ‖∇f‖∞ ≤ 0.5 on [−1.2, 1.2], so iterates move less than 0.3.
 */
const timesZ = (z: tf.Tensor, y: tf.Tensor): tf.Scalar => tf.mul(0.2, weighted(tf.mul(z, y)))

const smooth = sample(-1, 1)
const positive = sample(0.5, 1.5)
// Kink at 0: two steps of ‖∇f‖∞ ≤ 0.5 (timesZ) or ≤ 1 (elu, summed sigmoid cross-entropy).
const awayFromZero = sample(-1.2, 1.2, [0], 0.35)
const farFromZero = sample(-1.5, 1.5, [0], 0.65)
// Kinks at the box ±0.6; ‖∇f‖∞ ≤ 0.25 there.
const aroundBox = sample(-1.2, 1.2, [-0.6, 0.6], 0.2)

/** The table: every op the framework differentiates twice, and the tfjs ops it must avoid. */
export const secondOrderCases: ReadonlyArray<SecondOrderCase> = [
  { name: "exp", objective: (z) => weighted(tf.exp(z)), start: smooth, stock: "wrong", fixed: "correct" },
  // ×4 for sigmoid and softmax, whose second derivatives are ≤ 0.1 and ≤ 0.25: curvature O(1).
  {
    name: "sigmoid",
    objective: (z) => weighted(tf.mul(4, tf.sigmoid(z))),
    start: smooth,
    stock: "wrong",
    fixed: "correct"
  },
  { name: "tanh", objective: (z) => weighted(tf.tanh(z)), start: smooth, stock: "wrong", fixed: "correct" },
  { name: "elu", objective: (z) => weighted(tf.elu(z)), start: farFromZero, stock: "wrong", fixed: "correct" },
  {
    name: "softmax",
    objective: (z) => weighted(tf.mul(4, tf.softmax(z))),
    start: smooth,
    stock: "wrong",
    fixed: "correct"
  },
  {
    name: "pow (exponent)",
    objective: (z) => weighted(tf.pow(tf.scalar(1.5), z)),
    start: smooth,
    stock: "wrong",
    fixed: "correct"
  },
  {
    name: "tf.losses.sigmoidCrossEntropy",
    // Summed over entries (tfjs averages) so that its curvature is not divided by 12.
    objective: (z) => tf.mul(size, tf.losses.sigmoidCrossEntropy(constant(targets), z)),
    start: farFromZero,
    stock: "wrong",
    fixed: "correct"
  },
  {
    name: "max",
    objective: (z) => rowWeighted(tf.mul(0.2, tf.square(tf.max(z, 1)))),
    start: separatedRows(),
    stock: "throws",
    fixed: "correct"
  },
  {
    name: "tf.logSumExp",
    objective: (z) => rowWeighted(tf.logSumExp(z, 1)),
    start: smooth,
    stock: "throws",
    fixed: "correct"
  },
  { name: "logSumExp", objective: (z) => rowWeighted(logSumExp(z, 1)), start: smooth, stock: "throws", fixed: "correct" },
  { name: "logSoftmax", objective: (z) => weighted(logSoftmax(z)), start: smooth, stock: "throws", fixed: "correct" },
  {
    name: "softmaxCrossEntropy",
    objective: (z) => tf.mul(rows, softmaxCrossEntropy(z, labels())),
    start: smooth,
    stock: "throws",
    fixed: "correct"
  },
  {
    name: "softmaxCrossEntropyPerExample (weighted)",
    objective: (z) => tf.sum(tf.mul(constant(exampleWeights, [rows]), softmaxCrossEntropyPerExample(z, labels()))),
    start: smooth,
    stock: "throws",
    fixed: "correct"
  },
  {
    name: "clipByValue",
    objective: (z) => timesZ(z, tf.clipByValue(z, -0.6, 0.6)),
    start: aroundBox,
    stock: "throws",
    fixed: "correct"
  },
  // min(z, −z) = −|z| and max(z, −z) = |z|: both arguments depend on Z, so both gradients are used.
  {
    name: "minimum",
    objective: (z) => timesZ(z, tf.minimum(z, tf.neg(z))),
    start: awayFromZero,
    stock: "throws",
    fixed: "correct"
  },
  {
    name: "maximum",
    objective: (z) => timesZ(z, tf.maximum(z, tf.neg(z))),
    start: awayFromZero,
    stock: "throws",
    fixed: "correct"
  },
  {
    name: "box projection",
    objective: (z) => timesZ(z, tf.minimum(tf.maximum(z, tf.fill(shape, -0.6)), tf.fill(shape, 0.6))),
    start: aroundBox,
    stock: "throws",
    fixed: "correct"
  },
  {
    name: "leakyRelu",
    objective: (z) => timesZ(z, tf.leakyRelu(z, 0.2)),
    start: awayFromZero,
    stock: "throws",
    fixed: "correct"
  },
  {
    name: "sigmoidCrossEntropy",
    objective: (z) => tf.mul(size, sigmoidCrossEntropy(z, constant(targets))),
    start: smooth,
    stock: "correct",
    fixed: "correct"
  },
  {
    name: "matMul",
    objective: (z) => tf.sum(tf.mul(constant(gram, [cols, cols]), tf.matMul(z, z, true, false))),
    start: smooth,
    stock: "correct",
    fixed: "correct"
  },
  {
    name: "relu",
    objective: (z) => timesZ(z, tf.relu(z)),
    start: awayFromZero,
    stock: "correct",
    fixed: "correct"
  },
  { name: "abs", objective: (z) => timesZ(z, tf.abs(z)), start: awayFromZero, stock: "correct", fixed: "correct" },
  { name: "pow (base)", objective: (z) => weighted(tf.pow(z, 2.5)), start: positive, stock: "correct", fixed: "correct" },
  { name: "square", objective: (z) => weighted(tf.mul(z, tf.square(z))), start: smooth, stock: "correct", fixed: "correct" },
  { name: "sin", objective: (z) => weighted(tf.sin(z)), start: smooth, stock: "correct", fixed: "correct" },
  { name: "cos", objective: (z) => weighted(tf.cos(z)), start: smooth, stock: "correct", fixed: "correct" },
  { name: "log", objective: (z) => weighted(tf.log(z)), start: positive, stock: "correct", fixed: "correct" },
  { name: "sqrt", objective: (z) => weighted(tf.sqrt(z)), start: positive, stock: "correct", fixed: "correct" },
  { name: "softplus", objective: (z) => weighted(tf.softplus(z)), start: smooth, stock: "correct", fixed: "correct" },
  {
    name: "tf.logSigmoid",
    objective: (z) => weighted(tf.logSigmoid(z)),
    start: smooth,
    stock: "correct",
    fixed: "correct"
  },
  { name: "lqPenalty", objective: (z) => lqPenalty(z), start: smooth, stock: "correct", fixed: "correct" },
  {
    name: "tf.logSoftmax",
    objective: (z) => weighted(tf.logSoftmax(z)),
    start: smooth,
    stock: "wrong",
    fixed: "unsupported"
  },
  {
    name: "tf.losses.softmaxCrossEntropy",
    objective: (z) => tf.mul(rows, tf.losses.softmaxCrossEntropy(labels(), z)),
    start: smooth,
    stock: "wrong",
    fixed: "unsupported"
  }
]
