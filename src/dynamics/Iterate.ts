/**
 * Iterates of the lower-level dynamics, and the context every LL computation runs in.
 *
 * An iterate's `state` is `[y, ...aux]`: the LL variable first, then whatever the dynamics carries
 * (Nesterov's look-ahead point, momentum buffers). Tensors are immutable; the outer step's tensor
 * scope owns them all.
 */
import { Context } from "effect"
import type { Draw, Residuals, Vector } from "../domain/Problem.ts"

export type State = ReadonlyArray<Vector>

export interface Iterate {
  /** Step index: 0 is the initial iterate y_0. */
  readonly k: number
  readonly state: State
  /**
   * What the step that made this iterate kept of its linearization at y_{k−1} (the problem's
   * `lowerLinearization`, and `upperLinearization` for a step along ∇_y F too), for that step's
   * vector-Jacobian product in the reverse pass.
   */
  readonly residuals?: StepResiduals
}

/** A step's residuals: one group per objective it linearized, f's first, then F's where it did (BDA). */
export type StepResiduals = ReadonlyArray<Residuals>

/** The LL variable y_k of an iterate. */
export const iterateY = (iterate: Iterate): Vector => iterate.state[0]!

/** Every tensor an iterate holds: its state and its residuals. */
export const iterateTensors = (iterate: Iterate): ReadonlyArray<Vector> => [...iterate.state, ...(iterate.residuals ?? []).flat()]

/** Peak-memory probe and counters of one hypergradient computation. */
export interface CostMeter {
  /** Records the current tfjs tensor memory; the peak is reported in the cost. */
  readonly sample: () => void
  readonly peakBytes: () => number
}

/**
 * The lower-level problem at the current upper-level point x: what every LL stream reads. Step k
 * sees `at("lower", k)`, the UL objective `at("upper", 0)`, an adjoint's j-th product
 * `at("adjoint", j)`: full-batch problems give themselves, sampled ones the draw at that position,
 * the same each time it is asked for.
 */
export class LowerLevel extends Context.Service<LowerLevel, {
  readonly at: Draw
  readonly x: Vector
  readonly meter: CostMeter
}>()("effect-bilevel/dynamics/LowerLevel") {}
