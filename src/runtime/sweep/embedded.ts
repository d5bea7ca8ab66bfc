/**
 * A sweep on this machine: runs already recorded are skipped without starting a process, the rest go
 * to the worker pool (fresh ones from the start, interrupted ones from their checkpoint).
 */
import { Effect } from "effect"
import { type Outcome, recorded } from "./execute.ts"
import type { PlannedRun } from "./plan.ts"
import { type Progress, runPool } from "./pool.ts"

export const runEmbedded = Effect.fnUntraced(function*(
  runs: ReadonlyArray<PlannedRun>,
  options: { readonly workers: number; readonly progress?: Progress | undefined }
) {
  const done = yield* Effect.forEach(runs, recorded)
  const pending = runs.filter((_, i) => done[i] === undefined)
  const ran = yield* runPool(pending, options)
  const byId = new Map(ran.map((outcome) => [outcome.id, outcome]))
  return runs.map((run, i) => done[i] ?? byId.get(run.id)!) as ReadonlyArray<Outcome>
})
