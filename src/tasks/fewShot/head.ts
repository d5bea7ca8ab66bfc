/**
 * The per-episode problem of few-shot classification (IAPTT-GM paper Eq. 11) in (φ, y): φ the
 * backbone's features of the episode's support and query images (rows, support first), y a linear
 * head [W (d × N), b (N)] solved in the LL with a non-convex ‖·‖_q penalty,
 *
 *     f(φ, y) = mean CE(Φ_s W + b, Y_s) + λ Σ (y_i² + ε)^{q/2},     F(φ, y) = mean CE(Φ_q W + b, Y_q),
 *
 * the penalty over every entry of the head (weights and bias). Built from ops whose second order is
 * verified (src/tasks/losses.ts): every hypergradient differentiates ∇_y f, in y and in φ. ∇_y f is
 * also written out (`lowerGradient`), so each LL step is one product each way, with no tape:
 *
 *     ∇_W f = Φ_sᵀ (P − Y_s) / n_s + λ q W ⊙ (W² + ε)^{q/2 − 1},   ∇_b f = mean_rows(P − Y_s) + (the same in b),
 *
 * P = softmax(Φ_s W + b).
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

/** Logits [n, N] of feature rows [n, d] under head y. */
export const logits = (layout: Blocks.Layout, rows: tf.Tensor, y: Vector): tf.Tensor => {
  const { bias, weights } = Blocks.unflatten(layout, y)
  return tf.add(tf.matMul(rows, weights!), bias!)
}

/** λ Σ (y_i² + ε)^{q/2}. */
export const penalty = (regularizer: Regularizer, y: Vector): tf.Tensor =>
  tf.mul(regularizer.weight, lqPenalty(y, regularizer.exponent, regularizer.epsilon))

/** Its gradient, λ q y ⊙ (y² + ε)^{q/2 − 1}. */
export const penaltyGradient = ({ epsilon, exponent, weight }: Regularizer, y: Vector): tf.Tensor =>
  tf.mul(weight * exponent, tf.mul(y, tf.pow(tf.add(tf.square(y), epsilon), exponent / 2 - 1)))

/**
 * The episode's problem: `supportLabels` and `queryLabels` one-hot [n, N] (constants of the episode),
 * φ the flat [n_s + n_q, d] features.
 */
export const episodeProblem = (options: {
  readonly features: number
  readonly ways: number
  readonly supportLabels: tf.Tensor
  readonly queryLabels: tf.Tensor
  readonly regularizer: Regularizer
}): BilevelProblem => {
  const { features, queryLabels, regularizer, supportLabels, ways } = options
  const layout = headLayout(features, ways)
  const support = supportLabels.shape[0]!
  const query = queryLabels.shape[0]!
  const rows = (phi: Vector, from: number, count: number) => tf.reshape(tf.slice(phi, from * features, count * features), [count, features])
  return {
    lower: (phi, y) =>
      tf.add(softmaxCrossEntropy(logits(layout, rows(phi, 0, support), y), supportLabels), penalty(regularizer, y)),
    lowerGradient: (phi, y) => {
      const features = rows(phi, 0, support)
      const residual = tf.div(tf.sub(tf.softmax(logits(layout, features, y)), supportLabels), support)
      const data = tf.concat([tf.reshape(tf.matMul(features, residual, true), [-1]), tf.sum(residual, 0)])
      return tf.add(data, penaltyGradient(regularizer, y))
    },
    upper: (phi, y) => softmaxCrossEntropy(logits(layout, rows(phi, support, query), y), queryLabels)
  }
}
