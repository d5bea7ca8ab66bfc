/**
 * A small smooth bilevel problem with a non-constant LL Hessian and its Hessian-vector product in
 * closed form, for the tests of reverse-mode variants (hand-written VJPs, checkpointing):
 *
 *     f(x, y) = ½ Σ a_i y_i² − ⟨y, Bx⟩ + s Σ sin(y_i)     ∇_y f = a ⊙ y − Bx + s cos(y)
 *     F(x, y) = −‖y − c‖² + λ‖x‖²     with c the 9th GD iterate (step 0.3) from y_0 = 0 at x_0, so that
 *                                     F peaks there along that trajectory (an interior PTT index)
 *
 * so that ∇²_yy f · v = (a − s sin(y)) ⊙ v and ∇²_xy f · v = −Bᵀ v; its linearization keeps sin(y);
 * ∇_y F = −2(y − c), ∇²_yy F · v = −2v, ∇²_xy F = 0.
 */
import * as tf from "@tensorflow/tfjs-core"
import type { BilevelProblem, Vector } from "../../src/domain/Problem.ts"
import { make as makeRng } from "../../src/domain/Rng.ts"

export interface SmoothProblem {
  readonly problem: BilevelProblem
  /** The same problem without its closed-form products, linearization and ∇_y F (reverse mode falls back to autodiff). */
  readonly autodiff: BilevelProblem
  readonly x0: Vector
  readonly y0: Vector
}

/** Allocates the problem's tensors in the caller's tensor scope. */
export const smoothProblem = (options: { readonly dimX: number; readonly dimY: number; readonly seed?: number }): SmoothProblem => {
  const rng = makeRng(options.seed ?? 7)
  const { dimX, dimY } = options
  const a = tf.tensor1d(rng.array(dimY, () => 0.5 + rng.uniform()))
  const b = tf.tensor2d(rng.array(dimY * dimX, () => rng.normal() / Math.sqrt(dimX)), [dimY, dimX])
  const bT = tf.transpose(b)
  const s = 0.3
  const bx = (x: Vector) => tf.reshape(tf.matMul(b, tf.reshape(x, [dimX, 1])), [dimY])
  const x0 = tf.tensor1d(rng.array(dimX, rng.normal))
  const gradient = (x: Vector, y: Vector) => tf.add(tf.sub(tf.mul(a, y), bx(x)), tf.mul(s, tf.cos(y)))
  const c = tf.tidy(() => {
    let y: Vector = tf.zeros([dimY])
    for (let k = 0; k < 9; k++) y = tf.sub(y, tf.mul(0.3, gradient(x0, y)))
    return y
  })
  const autodiff: BilevelProblem = {
    lower: (x, y) => tf.add(tf.sub(tf.mul(0.5, tf.sum(tf.mul(a, tf.square(y)))), tf.sum(tf.mul(y, bx(x)))), tf.mul(s, tf.sum(tf.sin(y)))),
    upper: (x, y) => tf.add(tf.neg(tf.sum(tf.square(tf.sub(y, c)))), tf.mul(0.01, tf.sum(tf.square(x)))),
    lowerGradient: gradient
  }
  return {
    autodiff,
    problem: {
      ...autodiff,
      // Residuals [sin y]: a product handed those of another point would be off, and the tests see it.
      lowerLinearization: (x, y) => ({ gradient: gradient(x, y), residuals: [tf.sin(y)] }),
      lowerHessianVectorProduct: (_x, y, v, residuals) => ({
        y: tf.mul(tf.sub(a, tf.mul(s, residuals?.[0] ?? tf.sin(y))), v),
        x: tf.neg(tf.reshape(tf.matMul(bT, tf.reshape(v, [dimY, 1])), [dimX]))
      }),
      upperGradient: (_x, y) => tf.mul(-2, tf.sub(y, c)),
      upperHessianVectorProduct: (x, _y, v) => ({ y: tf.mul(-2, v), x: tf.zerosLike(x) })
    },
    x0,
    y0: tf.zeros([dimY])
  }
}
