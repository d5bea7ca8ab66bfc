/**
 * A hypergradient strategy: from the LL trajectory to dF/dx (and dF/dy_0, which
 * auxiliary-init uses as ∇_z). One interface, one value per strategy, like an optax transformation.
 */
import type { Effect } from "effect"
import type { HypergradientFailed } from "../domain/errors.ts"
import type { Vector } from "../domain/Problem.ts"
import type { Dynamics } from "../dynamics/Dynamics.ts"
import type { LowerLevel } from "../dynamics/Iterate.ts"
import type { Retention, Trajectory } from "../dynamics/selection.ts"

export interface HypergradientParts {
  /** dF/dx through the selected iterate. */
  readonly x: Vector
  /** dF/dy_0: the gradient of the learned initialization z under auxiliary-init; zero when not reached. */
  readonly y0: Vector
  /** Steps the reverse pass differentiated through. */
  readonly reverseSteps: number
  /** Hessian- or Jacobian-vector products computed. */
  readonly hvps: number
  /** An amortized strategy's new adjoint v, which the next outer step starts from. */
  readonly adjoint?: Vector
}

/**
 * What a strategy gives for dF/dy_0, the gradient auxiliary-init learns z by: `exact` (it
 * differentiates back to y_0), `approximate` (a documented stand-in: first-order's ∇_y F) or `none`
 * (implicit and truncated strategies, which never reach y_0). `Solver` refuses auxiliary-init with
 * `none` — in the types, and when solving — rather than learn z from a silent zero.
 */
export type InitGradient = "exact" | "approximate" | "none"

/** What an amortized strategy carries in from the previous outer step. */
export interface Carried {
  /** The previous outer step's adjoint v, under `Solver.warmAdjoint`. */
  readonly adjoint?: Vector
  /** The outer step t its schedules count from under `Solver.continueSchedules` (0 otherwise). */
  readonly outerStep: number
}

export interface HypergradientStrategy<R extends InitGradient = InitGradient> {
  readonly name: string
  readonly initGradient: R
  /**
   * Whether the result is the exact derivative of the finite pipeline F(x, y_k̄(x, y_0)) (reverse
   * through the whole prefix), so gradcheck's finite differences must match it; otherwise their gap
   * is the strategy's bias (implicit: an unconverged LL; truncated reverse; first order).
   */
  readonly exact: boolean
  /**
   * Whether the strategy differentiates through y_0 … y_k̄ (then the selection keeps them), or
   * `{ checkpointEvery: c }`: it does, but the selection keeps only y_0, every c-th iterate and y_k̄,
   * and the strategy recomputes the rest.
   */
  readonly needsPrefix: Retention
  /**
   * Whether its adjoint v is amortized across outer steps (AmIGO, SOBA): `compute` starts from the
   * previous step's v (`carried.adjoint`, zero at the first) and returns the new one, which the outer
   * loop carries when the solver says `Solver.warmAdjoint`.
   */
  readonly amortized?: boolean
  readonly compute: (
    dynamics: Dynamics,
    trajectory: Trajectory,
    carried: Carried
  ) => Effect.Effect<HypergradientParts, HypergradientFailed, LowerLevel>
}
