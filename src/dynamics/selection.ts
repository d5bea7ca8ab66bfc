/**
 * Selections: how an iterate stream ends in the iterate the UL objective uses.
 *
 * `last` is plain unrolling; `pessimistic` is PTT (k̄ = argmax_k F(x, y_k), ties to the smallest k);
 * `minResidual` truncates at argmin_k ‖R_α(x, y_k)‖. A selection keeps the prefix y_0 … y_k̄ only
 * when the hypergradient strategy differentiates through it.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Stream } from "effect"
import { norm, readScalar, readVector } from "../domain/tensors.ts"
import { residual } from "./Dynamics.ts"
import { type Iterate, iterateTensors, iterateY, LowerLevel } from "./Iterate.ts"
import type { Iterates } from "./iterates.ts"

export interface Trajectory {
  /**
   * y_0 … y_k̄ when retained (reverse-mode strategies), y_0, the checkpoints and y_k̄ under
   * checkpointing, otherwise only the selected iterate; in order of k.
   */
  readonly prefix: ReadonlyArray<Iterate>
  /** The selected iterate y_k̄. */
  readonly selected: Iterate
  /** LL steps taken forward (K, or fewer after a tolerance stop). */
  readonly stepsTaken: number
}

/**
 * What a selection keeps of y_0 … y_k̄ for the hypergradient: `false` only y_k̄, `true` all of them;
 * `{ checkpointEvery: c }` y_0, every c-th iterate and y_k̄ — memory O(K/c) instead of O(K), for a
 * strategy that recomputes the others; `{ window: M }` y_{k̄−M} … y_k̄ only, for one that reads no
 * further back (T-RHG): memory O(M).
 */
export type Retention = boolean | { readonly checkpointEvery: number } | { readonly window: number }

export interface Selection {
  readonly name: string
  readonly select: (iterates: Iterates, retainPrefix: Retention) => Effect.Effect<Trajectory, never, LowerLevel>
}

const fromCollected = (all: ReadonlyArray<Iterate>, index: number, retainPrefix: boolean): Trajectory => {
  const selected = all[index]!
  if (!retainPrefix) {
    // Release what no one will read; y_0 belongs to the caller.
    for (const iterate of all) if (iterate !== selected) release(iterate, [selected])
  }
  return { prefix: retainPrefix ? all.slice(0, index + 1) : [selected], selected, stepsTaken: all.length - 1 }
}

/** Index of the first maximum (ties → smallest k), over candidates k = 1 … K (k = 0 when K = 0). */
const argBest = (values: ReadonlyArray<number>, better: (a: number, b: number) => boolean): number => {
  let best = values.length > 1 ? 1 : 0
  for (let k = best + 1; k < values.length; k++) if (better(values[k]!, values[best]!)) best = k
  return best
}

/** A selection's score of an iterate (F, a residual norm), as a scalar tensor. */
type Score = (iterate: Iterate) => tf.Tensor

/** Scores every iterate in one tidy and one host read. */
const scoreAll = (all: ReadonlyArray<Iterate>, score: Score) =>
  readVector(tf.tidy(() => tf.stack(all.map(score))))

/** Releases an iterate's tensors, except y_0's (the caller's) and any that `kept` still holds. */
const release = (iterate: Iterate, kept: ReadonlyArray<Iterate>) => {
  if (iterate.k === 0) return
  const shared = new Set(kept.flatMap((other) => (other === iterate ? [] : iterateTensors(other))))
  iterateTensors(iterate).forEach((t) => shared.has(t) || t.dispose())
}

/**
 * Selection that keeps part of the prefix, decided as the stream runs: the newest iterate (the stream
 * steps from it), the best so far (ties to the smallest k, over k ≥ 1 once there is one), and either
 * every c-th iterate or those within M steps before the best or the newest (a later best has its
 * window there); the others are released at once. Scoring each iterate as it arrives costs one host
 * read per step; without a score the newest is the best (`last`).
 */
const selectRetaining = (
  iterates: Iterates,
  retention: { readonly checkpointEvery: number } | { readonly window: number },
  score?: Score,
  better: (a: number, b: number) => boolean = () => true
): Effect.Effect<Trajectory, never, LowerLevel> => {
  const inWindow = (k: number, end: number) => "window" in retention && k <= end && k >= end - retention.window
  const needed = (iterate: Iterate, best: Iterate, newest: Iterate) =>
    iterate === newest || iterate === best ||
    ("checkpointEvery" in retention ? iterate.k % retention.checkpointEvery === 0 : inWindow(iterate.k, best.k) || inWindow(iterate.k, newest.k))
  return Stream.runFoldEffect(
    iterates,
    () => ({ kept: [] as Array<Iterate>, best: undefined as { readonly iterate: Iterate; readonly value: number } | undefined }),
    ({ best, kept }, iterate) => Effect.map(
      score === undefined ? Effect.succeed(0) : readScalar(tf.tidy(() => score(iterate))),
      (value) => {
        const next = best === undefined || iterate.k === 1 || (iterate.k > 1 && better(value, best.value))
          ? { iterate, value }
          : best
        kept.push(iterate)
        const keep = kept.filter((other) => needed(other, next.iterate, iterate))
        for (const other of kept) if (!keep.includes(other)) release(other, keep)
        return { kept: keep, best: next }
      }
    )
  ).pipe(Effect.map(({ best, kept }) => {
    const selected = best!.iterate
    const prefix = kept.filter((iterate) =>
      iterate.k <= selected.k && ("checkpointEvery" in retention || inWindow(iterate.k, selected.k))
    )
    for (const iterate of kept) if (!prefix.includes(iterate)) release(iterate, prefix)
    return { prefix, selected, stepsTaken: kept.at(-1)!.k }
  }))
}

/** The last iterate y_K. Without a retained prefix, earlier iterates are released as the stream runs. */
export const last: Selection = {
  name: "last",
  select: (iterates, retainPrefix) =>
    typeof retainPrefix === "object"
      ? selectRetaining(iterates, retainPrefix)
      : retainPrefix
      ? Effect.map(Stream.runCollect(iterates), (all) => fromCollected(all, all.length - 1, true))
      : Stream.runFold(iterates, () => undefined as Trajectory | undefined, (previous, iterate) => {
        if (previous !== undefined) release(previous.selected, [iterate])
        return { prefix: [iterate], selected: iterate, stepsTaken: iterate.k }
      }).pipe(Effect.map((trajectory) => trajectory!))
}

/** Pessimistic trajectory truncation (PTT): y_k̄ with k̄ = argmax_{k ∈ 1..K} F(x, y_k). */
export const pessimistic: Selection = {
  name: "pessimistic",
  select: (iterates, retainPrefix) =>
    Effect.gen(function*() {
      const { at, x } = yield* LowerLevel
      const higher = (a: number, b: number) => a > b
      // One UL draw for the whole trajectory: the objective the hypergradient then differentiates.
      const upper: Score = (iterate) => at("upper", 0).upper(x, iterateY(iterate))
      if (typeof retainPrefix === "object") {
        return yield* selectRetaining(iterates, retainPrefix, upper, higher)
      }
      const all = yield* Stream.runCollect(iterates)
      const values = yield* scoreAll(all, upper)
      return fromCollected(all, argBest(values, higher), retainPrefix)
    })
}

/** Truncate at the minimal projected-gradient residual: k* = argmin_{k ∈ 1..K} ‖R_α(x, y_k)‖. */
export const minResidual = (alpha: number): Selection => ({
  name: `min-residual(α=${alpha})`,
  select: (iterates, retainPrefix) =>
    Effect.gen(function*() {
      const { at, x } = yield* LowerLevel
      // The residual on step k's own LL draw, as the tolerance stop measures it.
      const score: Score = (iterate) => norm(residual(at("lower", iterate.k), x, iterateY(iterate), alpha))
      const lower = (a: number, b: number) => a < b
      if (typeof retainPrefix === "object") {
        return yield* selectRetaining(iterates, retainPrefix, score, lower)
      }
      const all = yield* Stream.runCollect(iterates)
      return fromCollected(all, argBest(yield* scoreAll(all, score), lower), retainPrefix)
    })
})

/**
 * y_k itself, the stream cut there: a truncation index held fixed. Differentiating a selection
 * (PTT, min-residual, a tolerance stop) means differentiating the piece it selected, so finite
 * differences of such a pipeline hold its index.
 */
export const at = (k: number): Selection => ({
  name: `at(${k})`,
  select: (iterates, retainPrefix) =>
    Effect.map(
      Stream.runCollect(Stream.take(iterates, k + 1)),
      (all) => fromCollected(all, all.length - 1, retainPrefix !== false)
    )
})
