/**
 * Progress of runs executed elsewhere (by the cluster's runners), read off the shared sweep directory:
 * the journal says which runs are in flight, their steps.ndjson how far each is. The submitter polls it
 * to show the same lines as an embedded sweep.
 */
import { type Duration, Effect, FileSystem, Schedule } from "effect"
import * as RunRecord from "../RunRecord.ts"
import * as Journal from "./journal.ts"
import type { PlannedRun } from "./plan.ts"
import type { Progress } from "./pool.ts"

/** The number of whole lines in a run's steps.ndjson and the last one's F (none before its first step). */
const latestStep = Effect.fnUntraced(function*(dir: string) {
  const fs = yield* FileSystem.FileSystem
  const text = yield* fs.readFileString(`${dir}/${RunRecord.files.steps}`).pipe(Effect.orElseSucceed(() => ""))
  const lines = text.split("\n").slice(0, -1)
  const last = lines.at(-1)
  return { steps: lines.length, F: last === undefined ? undefined : (JSON.parse(last) as { F: number }).F }
})

/** Every `interval`, shows each run of `runs` that some process has started and not ended. Runs until interrupted. */
export const watch = (runs: ReadonlyArray<PlannedRun>, progress: Progress, interval: Duration.Input = "1 second") => {
  const shown = new Set<string>()
  const byId = new Map(runs.map((run) => [run.id, run]))
  const poll = Effect.gen(function*() {
    const entries = runs.length === 0 ? [] : yield* Journal.read(runs[0]!.journal)
    const ended = new Set(entries.filter((e) => e.event === "end").map((e) => e.id))
    const active = new Set(entries.filter((e) => e.event === "start" && !ended.has(e.id) && byId.has(e.id)).map((e) => e.id))
    for (const id of active) {
      const run = byId.get(id)!
      const info = yield* RunRecord.readInfo(run.dir).pipe(Effect.option)
      const { F, steps } = yield* latestStep(run.dir)
      if (!shown.has(id)) progress.started(run)
      shown.add(id)
      const total = info._tag === "Some" ? Number(info.value.config["outerSteps"]) : steps
      if (F !== undefined) progress.step(run, steps, total, F)
    }
  }).pipe(Effect.catch(() => Effect.void))
  return Effect.repeat(poll, Schedule.spaced(interval))
}
