/**
 * Selections: how an iterate stream ends in the iterate the UL objective uses (SPEC §3).
 *
 * `last` is plain unrolling; `pessimistic` is PTT (k̄ = argmax_k F(x, y_k), ties to the smallest k);
 * `minResidual` truncates at argmin_k ‖R_α(x, y_k)‖. A selection keeps the prefix y_0 … y_k̄ only
 * when the hypergradient strategy differentiates through it.
 */
import * as tf from "@tensorflow/tfjs-core"
import type { Vector } from "../domain/Problem.ts"
import { Effect, Stream } from "effect"
import { norm, vectorValue } from "../domain/tensors.ts"
import { residual } from "./Dynamics.ts"
import { type Iterate, iterateY, LowerLevel } from "./Iterate.ts"
import type { Iterates } from "./iterates.ts"

export interface Trajectory {
  /** y_0 … y_k̄ when retained (reverse-mode strategies), otherwise only the selected iterate. */
  readonly prefix: ReadonlyArray<Iterate>
  /** The selected iterate y_k̄. */
  readonly selected: Iterate
  /** LL steps taken forward (K, or fewer after a tolerance stop). */
  readonly stepsTaken: number
}

export interface Selection {
  readonly name: string
  readonly select: (iterates: Iterates, retainPrefix: boolean) => Effect.Effect<Trajectory, never, LowerLevel>
}

const fromCollected = (all: ReadonlyArray<Iterate>, index: number, retainPrefix: boolean): Trajectory => {
  const selected = all[index]!
  if (!retainPrefix) {
    // Release what no one will read; y_0 belongs to the caller.
    for (const iterate of all) {
      if (iterate !== selected && iterate.k > 0) iterate.state.forEach((t) => t.dispose())
    }
  }
  return { prefix: retainPrefix ? all.slice(0, index + 1) : [selected], selected, stepsTaken: all.length - 1 }
}

/** Index of the first maximum (ties → smallest k), over candidates k = 1 … K (k = 0 when K = 0). */
const argBest = (values: ReadonlyArray<number>, better: (a: number, b: number) => boolean): number => {
  let best = values.length > 1 ? 1 : 0
  for (let k = best + 1; k < values.length; k++) if (better(values[k]!, values[best]!)) best = k
  return best
}

/** Scores every iterate in one tidy and one host read. */
const scoreAll = (all: ReadonlyArray<Iterate>, score: (y: Vector) => tf.Tensor) =>
  vectorValue(tf.tidy(() => tf.stack(all.map((iterate) => score(iterateY(iterate))))))

/** The last iterate y_K. Without a retained prefix, earlier iterates are released as the stream runs. */
export const last: Selection = {
  name: "last",
  select: (iterates, retainPrefix) =>
    retainPrefix
      ? Effect.map(Stream.runCollect(iterates), (all) => fromCollected(all, all.length - 1, true))
      : Stream.runFold(iterates, () => undefined as Trajectory | undefined, (previous, iterate) => {
        if (previous !== undefined && previous.selected.k > 0) previous.selected.state.forEach((t) => t.dispose())
        return { prefix: [iterate], selected: iterate, stepsTaken: iterate.k }
      }).pipe(Effect.map((trajectory) => trajectory!))
}

/** Pessimistic trajectory truncation (PTT): y_k̄ with k̄ = argmax_{k ∈ 1..K} F(x, y_k). */
export const pessimistic: Selection = {
  name: "pessimistic",
  select: (iterates, retainPrefix) =>
    Effect.gen(function*() {
      const { problem, x } = yield* LowerLevel
      const all = yield* Stream.runCollect(iterates)
      const values = scoreAll(all, (y) => problem.upper(x, y))
      return fromCollected(all, argBest(values, (a, b) => a > b), retainPrefix)
    })
}

/** Truncate at the minimal projected-gradient residual: k* = argmin_{k ∈ 1..K} ‖R_α(x, y_k)‖. */
export const minResidual = (alpha: number): Selection => ({
  name: `min-residual(α=${alpha})`,
  select: (iterates, retainPrefix) =>
    Effect.gen(function*() {
      const { problem, x } = yield* LowerLevel
      const all = yield* Stream.runCollect(iterates)
      const values = scoreAll(all, (y) => norm(residual(problem, x, y, alpha)))
      return fromCollected(all, argBest(values, (a, b) => a < b), retainPrefix)
    })
})
