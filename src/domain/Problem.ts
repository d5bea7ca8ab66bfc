/**
 * The bilevel problem as data:
 *
 *     min_{x ∈ X} F(x, y)   subject to   y ∈ argmin_{y ∈ Y} f(x, y)
 *
 * Objectives return scalar tensors (rank 0).
 *
 * x (upper level, hyperparameters) and y (lower level, weights) are flat float32 vectors: every
 * strategy (reverse adjoints, conjugate gradient, Neumann series) then works on plain vectors, and a
 * model unflattens its weights with `slice`, whose derivatives of every order are exact.
 *
 * F and f must be built only from ops whose second derivative tfjs gets right (see
 * `src/runtime/gradients.ts`): every hypergradient differentiates ∇_y f.
 */
import type * as tf from "@tensorflow/tfjs-core"

/** A flat float32 vector (rank 1 by convention; tfjs types it as a plain Tensor). */
export type Vector = tf.Tensor

/** Intermediates of ∇_y f at a point, kept for second-order products there (see `lowerLinearization`). */
export type Residuals = ReadonlyArray<tf.Tensor>

export interface BilevelProblem {
  /** Upper-level objective F(x, y), e.g. the validation loss. */
  readonly upper: (x: Vector, y: Vector) => tf.Tensor
  /** Lower-level objective f(x, y), e.g. the training loss. */
  readonly lower: (x: Vector, y: Vector) => tf.Tensor
  /**
   * ∇_y f in closed form, where a model has a cheap one (e.g. linear and MLP with cross-entropy):
   * used instead of autodiff. It must itself be built from twice-differentiable ops, since
   * hypergradients differentiate it, and a test must show it equals autodiff.
   */
  readonly lowerGradient?: (x: Vector, y: Vector) => Vector
  /**
   * Second derivatives of f along v in closed form, where a model has them cheaply: for
   * s(x, y) = ⟨∇_y f(x, y), v⟩, `y` = ∂s/∂y = ∇²_yy f · v and `x` = ∂s/∂x = ∇²_xy f · v (the mixed
   * block, shaped like x). A gradient step's vector-Jacobian product is then two axpys and this one
   * call, with no tape (`gradientDescent` and `nesterovMomentum` in src/dynamics/Dynamics.ts use it
   * when Y is unconstrained), so reverse-mode hypergradients cost a small multiple of the forward
   * pass. Only its first derivatives are used: it may use any op. A test must show it equals
   * autodiff of ∇_y f.
   */
  readonly lowerHessianVectorProduct?: (
    x: Vector,
    y: Vector,
    v: Vector,
    residuals?: Residuals
  ) => { readonly x: Vector; readonly y: Vector }
  /**
   * ∇_y f(x, y) (equal, op for op, to `lowerGradient`) together with the intermediates a
   * `lowerHessianVectorProduct` at the same (x, y) would otherwise recompute (a model's outputs, its
   * data-weighted residual): a gradient step keeps them beside its iterate, and the reverse pass hands
   * them back, as JAX's `linearize` keeps its residuals. Given them, the product must equal the one
   * computed without.
   */
  readonly lowerLinearization?: (x: Vector, y: Vector) => { readonly gradient: Vector; readonly residuals: Residuals }
  /** Proj_X, the projection onto the UL feasible set; identity when absent. */
  readonly projectX?: (x: Vector) => Vector
  /** Proj_Y, the projection onto the LL feasible set; identity when absent. */
  readonly projectY?: (y: Vector) => Vector
}
