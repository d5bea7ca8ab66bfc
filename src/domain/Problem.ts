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
import * as Random from "./Random.ts"
import type { RandomSource } from "./Rng.ts"

/** A flat float32 vector (rank 1 by convention; tfjs types it as a plain Tensor). */
export type Vector = tf.Tensor

/** Intermediates of ∇_y f at a point, kept for second-order products there (see `lowerLinearization`). */
export type Residuals = ReadonlyArray<tf.Tensor>

/** ∂/∂x and ∂/∂y of ⟨∇_y h(x, y), v⟩ for an objective h, from its linearization's residuals at (x, y) where given. */
export type HessianVectorProduct = (
  x: Vector,
  y: Vector,
  v: Vector,
  residuals?: Residuals
) => { readonly x: Vector; readonly y: Vector }

/** ∇_y h(x, y) for an objective h, with the residuals its `HessianVectorProduct` at (x, y) reuses. */
export type Linearization = (x: Vector, y: Vector) => { readonly gradient: Vector; readonly residuals: Residuals }

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
  readonly lowerHessianVectorProduct?: HessianVectorProduct
  /**
   * ∇_y f(x, y) (equal, op for op, to `lowerGradient`) together with the intermediates a
   * `lowerHessianVectorProduct` at the same (x, y) would otherwise recompute (a model's outputs, its
   * data-weighted residual): a gradient step keeps them beside its iterate, and the reverse pass hands
   * them back, as JAX's `linearize` keeps its residuals. Given them, the product must equal the one
   * computed without.
   */
  readonly lowerLinearization?: Linearization
  /**
   * ∇_y F in closed form, where a model has a cheap one: used instead of autodiff by the LL
   * dynamics that step along it (BDA). Twice-differentiable ops only, and a test must show it
   * equals autodiff.
   */
  readonly upperGradient?: (x: Vector, y: Vector) => Vector
  /**
   * `lowerHessianVectorProduct` for F: ∂/∂y and ∂/∂x of ⟨∇_y F(x, y), v⟩ in closed form, reusing
   * `upperLinearization`'s residuals where given. With it and f's, BDA's aggregated step has a
   * hand-written VJP too. A test must show it equals autodiff of ∇_y F.
   */
  readonly upperHessianVectorProduct?: HessianVectorProduct
  /** `lowerLinearization` for F: ∇_y F (equal, op for op, to `upperGradient`) and what its product reuses. */
  readonly upperLinearization?: Linearization
  /** Proj_X, the projection onto the UL feasible set; identity when absent. */
  readonly projectX?: (x: Vector) => Vector
  /** Proj_Y, the projection onto the LL feasible set; identity when absent. */
  readonly projectY?: (y: Vector) => Vector
  /**
   * The problem on one draw of its data: f (and its hooks) on an LL minibatch, F on a UL minibatch,
   * both drawn from `random`. Absent: full batch, the problem itself at every step. The draw must
   * depend on `random` alone (src/domain/Random.ts), so that every consumer of a step regenerates
   * the same sample; tensors it makes belong to the caller's scope.
   */
  readonly sample?: (random: RandomSource) => BilevelProblem
  /**
   * A meta-batch: the episodes of one outer step, drawn from `random`, each a sub-problem sharing x
   * with its own LL variable. The outer step averages their hypergradients.
   */
  readonly episodes?: (random: RandomSource) => ReadonlyArray<Episode>
}

/**
 * One episode of a meta-batch: a bilevel problem in (φ, y) with φ = encode(x), e.g. a backbone's
 * features of the episode's images. `encode` runs once per episode, not at every LL and reverse
 * step, and returns φ with its pullback, cotangent of φ ↦ (∂φ/∂x)ᵀ cotangent, called at most once,
 * after the episode's reverse pass; absent, φ = x. The pullback may read tensors `encode` made (a
 * backbone's activations): the caller keeps them alive in its tensor scope until then, and a caller
 * that wants φ alone takes it in a `tf.tidy`. `encodeBy` (src/solvers/metaBatch.ts) makes one by
 * autodiff.
 */
export interface Episode {
  readonly problem: BilevelProblem
  readonly encode?: (x: Vector) => { readonly value: Vector; readonly vjp: (cotangent: Vector) => Vector }
}

/**
 * What a draw is for, so that draws for different uses at the same index are independent: the LL
 * step k ("lower", k), the UL objective of an outer step ("upper", 0), the j-th product of an
 * adjoint or linear solve ("adjoint", j).
 */
export type Purpose = "lower" | "upper" | "adjoint"

/** The problem drawn for `purpose` at `index`: a pure function of the position, see {@link draws}. */
export type Draw = (purpose: Purpose, index: number) => BilevelProblem

/**
 * The draws of `problem` below `key` (an outer step's, or one episode's): the problem itself when it
 * has no sampler, else `sample` on the source at key/purpose/index. Nothing is cached: a consumer
 * that needs step k's sample again regenerates it.
 */
export const draws = (problem: BilevelProblem, key: Random.Key): Draw => {
  const sample = problem.sample
  return sample === undefined
    ? () => problem
    : (purpose, index) => sample(Random.random(Random.path(key, purpose, index)))
}

/** The problem on all of its data: no sampler and no meta-batch (for metrics and ground truth). */
export const fullBatch = ({ episodes: _episodes, sample: _sample, ...problem }: BilevelProblem): BilevelProblem => problem
