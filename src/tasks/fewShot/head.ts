/**
 * The per-episode problem of few-shot classification (IAPTT-GM paper Eq. 11) in (φ, y): φ the
 * backbone's features of the episode's support and query images (rows, support first), y a linear
 * head [W (d × N), b (N)] solved in the LL with a non-convex ‖·‖_q penalty,
 *
 *     f(φ, y) = mean CE(Φ_s W + b, Y_s) + λ Σ (y_i² + ε)^{q/2},     F(φ, y) = mean CE(Φ_q W + b, Y_q),
 *
 * the penalty over every entry of the head (weights and bias). Each row of φ is an image's d features
 * followed by a 1, the bias's input, so that the head is one [d + 1, N] matrix [W; b] (y's layout)
 * and the logits one product, Φ [W; b]: the LL runs a few dozen products of a handful of numbers, and
 * on wasm each op costs a thread hand-off, whatever its size.
 *
 * Built from ops whose second order is verified (src/tasks/losses.ts): every hypergradient
 * differentiates ∇_y f, in y and in φ. ∇_y f is also written out (`lowerGradient`), so each LL step is
 * one product each way, with no tape:
 *
 *     ∇_y f = vec(Φ_sᵀ (P − Y_s)) / n_s + λ q y ⊙ (y² + ε)^{q/2 − 1},   P = softmax(Φ_s [W; b]).
 */
import * as tf from "@tensorflow/tfjs-core"
import * as Blocks from "../../domain/Blocks.ts"
import type { BilevelProblem, Vector } from "../../domain/Problem.ts"
import { lqPenalty, softmaxCrossEntropy } from "../losses.ts"

export interface Regularizer {
  /** λ. */
  readonly weight: number
  /** q < 1: non-convex. */
  readonly exponent: number
  /** ε > 0: smooths the kink of |y|^q at 0. */
  readonly epsilon: number
}

/** The head's blocks for d features and N ways. */
export const headLayout = (features: number, ways: number): Blocks.Layout =>
  Blocks.layout({ weights: [features, ways], bias: [ways] })

/** Logits [n, N] of rows [n, d + 1] (features and a 1) under head y, [W; b] flat. */
export const logits = (rows: tf.Tensor, y: Vector, ways: number): tf.Tensor => tf.matMul(rows, tf.reshape(y, [-1, ways]))

/** λ Σ (y_i² + ε)^{q/2}. */
export const penalty = (regularizer: Regularizer, y: Vector): tf.Tensor =>
  tf.mul(regularizer.weight, lqPenalty(y, regularizer.exponent, regularizer.epsilon))

/** Its gradient, λ q y ⊙ (y² + ε)^{q/2 − 1}. */
export const penaltyGradient = ({ epsilon, exponent, weight }: Regularizer, y: Vector): tf.Tensor =>
  tf.mul(weight * exponent, tf.mul(y, tf.pow(tf.add(tf.square(y), epsilon), exponent / 2 - 1)))

/** Its second derivative along v, λ q (y² + ε)^{q/2 − 2} ((q − 1) y² + ε) ⊙ v (the penalty is separable). */
export const penaltyHessianVectorProduct = ({ epsilon, exponent, weight }: Regularizer, y: Vector, v: Vector): tf.Tensor => {
  const square = tf.square(y)
  const curvature = tf.mul(tf.pow(tf.add(square, epsilon), exponent / 2 - 2), tf.add(tf.mul(exponent - 1, square), epsilon))
  return tf.mul(weight * exponent, tf.mul(curvature, v))
}

/**
 * The episode's problem: `supportLabels` and `queryLabels` one-hot [n, N] (constants of the episode),
 * φ the flat [n_s + n_q, d + 1] rows of features and a 1.
 *
 * Its gradients and Hessian-vector products are written out, for f and for F alike (BDA steps along
 * ∇_y F), so that a reverse step of the head is a few small products with no tape. For the
 * cross-entropy of rows Φ (support for f, query for F) against labels Y, with P = softmax(Φ [W; b]),
 * R = (P − Y)/n, v = [V; u] and D = Φ [V; u] (the logits' tangent), s = ⟨∇_y CE, v⟩ = ⟨R, D⟩, and
 * the softmax Jacobian is symmetric, so
 *
 *     ∂s/∂y = vec(Φᵀ G),   ∂s/∂Φ = R [V; u]ᵀ + G [W; b]ᵀ,   ∂s/∂(the other rows) = 0,
 *
 * G = (P ⊙ D − P ⊙ rowsum(P ⊙ D))/n, the tangent of R; f adds its penalty's terms in y. A gradient
 * step keeps P for the product.
 */
export const episodeProblem = (options: {
  readonly features: number
  readonly ways: number
  readonly supportLabels: tf.Tensor
  readonly queryLabels: tf.Tensor
  readonly regularizer: Regularizer
}): BilevelProblem => {
  const { queryLabels, regularizer, supportLabels, ways } = options
  const width = options.features + 1
  const support = supportLabels.shape[0]!
  const query = queryLabels.shape[0]!
  const total = support + query
  const supportTerm = crossEntropyTerm({ width, ways, from: 0, total, labels: supportLabels })
  const queryTerm = crossEntropyTerm({ width, ways, from: support, total, labels: queryLabels })
  const linearization = (phi: Vector, y: Vector) => {
    const { gradient, residuals } = supportTerm.linearization(phi, y)
    return { gradient: tf.add(gradient, penaltyGradient(regularizer, y)), residuals }
  }
  return {
    lower: (phi, y) => tf.add(supportTerm.value(phi, y), penalty(regularizer, y)),
    lowerGradient: (phi, y) => linearization(phi, y).gradient,
    lowerLinearization: linearization,
    lowerHessianVectorProduct: (phi, y, v, residuals) => {
      const product = supportTerm.hessianVectorProduct(phi, y, v, residuals)
      return { x: product.x, y: tf.add(product.y, penaltyHessianVectorProduct(regularizer, y, v)) }
    },
    upper: queryTerm.value,
    upperGradient: (phi, y) => queryTerm.linearization(phi, y).gradient,
    upperLinearization: queryTerm.linearization,
    upperHessianVectorProduct: queryTerm.hessianVectorProduct
  }
}

/** One mean cross-entropy, over the `labels.shape[0]` rows of φ from row `from` (of `total`), and its closed forms. */
const crossEntropyTerm = (options: {
  readonly width: number
  readonly ways: number
  readonly from: number
  readonly total: number
  readonly labels: tf.Tensor
}) => {
  const { from, labels, total, ways, width } = options
  const count = labels.shape[0]!
  const rowsOf = (phi: Vector) => tf.reshape(tf.slice(phi, from * width, count * width), [count, width])
  /** vec(Φᵀ M): the gradient of ⟨M, logits⟩ in the head. */
  const headGradient = (termRows: tf.Tensor, m: tf.Tensor) => tf.reshape(tf.matMul(termRows, m, true), [-1])
  const linearization = (phi: Vector, y: Vector) => {
    const termRows = rowsOf(phi)
    const probabilities = tf.softmax(logits(termRows, y, ways))
    return { gradient: headGradient(termRows, tf.div(tf.sub(probabilities, labels), count)), residuals: [probabilities] }
  }
  const hessianVectorProduct = (phi: Vector, y: Vector, v: Vector, residuals?: ReadonlyArray<tf.Tensor>) => {
    const termRows = rowsOf(phi)
    const [probabilities] = residuals ?? linearization(phi, y).residuals
    const pd = tf.mul(probabilities!, logits(termRows, v, ways))
    const tangent = tf.div(tf.sub(pd, tf.mul(probabilities!, tf.sum(pd, 1, true))), count)
    const residual = tf.div(tf.sub(probabilities!, labels), count)
    const rowsPart = tf.add(tf.matMul(residual, tf.reshape(v, [width, ways]), false, true), tf.matMul(tangent, tf.reshape(y, [width, ways]), false, true))
    return {
      x: tf.pad(tf.reshape(rowsPart, [-1]), [[from * width, (total - from - count) * width]]),
      y: headGradient(termRows, tangent)
    }
  }
  return { value: (phi: Vector, y: Vector) => softmaxCrossEntropy(logits(rowsOf(phi), y, ways), labels), linearization, hessianVectorProduct }
}
