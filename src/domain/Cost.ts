/** What one hypergradient cost, counted by the streams that computed it. */
import { Schema } from "effect"

export const Cost = Schema.Struct({
  /** LL steps taken forward. */
  innerSteps: Schema.Number,
  /** Steps the reverse pass differentiated through. */
  reverseSteps: Schema.Number,
  /** Hessian- or Jacobian-vector products of implicit strategies. */
  hvps: Schema.Number,
  /** Peak tfjs tensor memory the hypergradient computation added above what existed when it began, in bytes. */
  peakBytes: Schema.Number
})
export type Cost = typeof Cost.Type
