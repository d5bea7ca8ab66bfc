/**
 * A hypergradient strategy (SPEC §4): from the LL trajectory to dF/dx (and dF/dy_0, which
 * auxiliary-init uses as ∇_z). One interface, one value per strategy, like an optax transformation.
 */
import type { Effect } from "effect"
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
}

export interface HypergradientStrategy {
  readonly name: string
  /**
   * Whether the strategy differentiates through y_0 … y_k̄ (then the selection keeps them), or
   * `{ checkpointEvery: c }`: it does, but the selection keeps only y_0, every c-th iterate and y_k̄,
   * and the strategy recomputes the rest.
   */
  readonly needsPrefix: Retention
  readonly compute: (
    dynamics: Dynamics,
    trajectory: Trajectory
  ) => Effect.Effect<HypergradientParts, never, LowerLevel>
}
