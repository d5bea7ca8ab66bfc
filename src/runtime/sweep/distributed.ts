/**
 * A sweep submitted to the cluster: runs already recorded in the shared directory are skipped here,
 * the rest are sent as `Execute` messages and their outcomes awaited. Progress: a line per run in
 * flight, read off the shared directory, and a tick per outcome.
 */
import { Effect } from "effect"
import { checkDatabase, clientLayer, submit } from "./cluster.ts"
import { RunRecordError } from "../../domain/errors.ts"
import { type Outcome, recorded, runState } from "./execute.ts"
import type { PlannedRun } from "./plan.ts"
import type { Progress } from "./pool.ts"
import { watch } from "./watch.ts"

export const runDistributed = (runs: ReadonlyArray<PlannedRun>, database: string, progress?: Progress | undefined) =>
  Effect.gen(function*() {
    const done = yield* Effect.forEach(runs, recorded)
    const pending = runs.filter((_, i) => done[i] === undefined)
    if (pending.length > 0) yield* checkDatabase(database)
    const sent = pending.length === 0 ? [] : yield* submit(pending, progress?.ended).pipe(
      Effect.provide(clientLayer({ database })),
      (submitted) => progress === undefined ? submitted : Effect.raceFirst(submitted, Effect.andThen(watch(pending, progress), Effect.never))
    )
    // A reply the database kept from an earlier sweep into a directory since deleted runs nothing.
    for (const outcome of sent) {
      if ((yield* runState(outcome.dir)) === "absent") {
        return yield* new RunRecordError({
          path: outcome.dir,
          problem: `was reported ${outcome.status} by the cluster but holds no record: the database kept the reply to an ` +
            `earlier sweep into this directory, since deleted. Use another --out, or clear the cluster_messages and cluster_replies tables`
        })
      }
    }
    const byId = new Map(sent.map((outcome) => [outcome.id, outcome]))
    return runs.map((run, i) => done[i] ?? byId.get(run.id)!) as ReadonlyArray<Outcome>
  })
