/**
 * A sweep submitted to the cluster: runs already recorded in the shared directory are skipped here,
 * the rest are sent as `Execute` messages and their outcomes awaited (progress: one tick per run).
 */
import { Effect } from "effect"
import { clientLayer, submit } from "./cluster.ts"
import { type Outcome, recorded } from "./execute.ts"
import type { PlannedRun } from "./plan.ts"
import type { Progress } from "./pool.ts"

export const runDistributed = (runs: ReadonlyArray<PlannedRun>, database: string, progress?: Progress | undefined) =>
  Effect.gen(function*() {
    const done = yield* Effect.forEach(runs, recorded)
    const pending = runs.filter((_, i) => done[i] === undefined)
    const sent = pending.length === 0 ? [] : yield* submit(pending, progress?.ended).pipe(Effect.provide(clientLayer({ database })))
    const byId = new Map(sent.map((outcome) => [outcome.id, outcome]))
    return runs.map((run, i) => done[i] ?? byId.get(run.id)!) as ReadonlyArray<Outcome>
  })
