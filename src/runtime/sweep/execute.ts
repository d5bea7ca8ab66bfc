/**
 * One run of a sweep, in this process, from whatever its directory holds: nothing (or a directory
 * without run.json, killed while being created) → a fresh run; an unfinished or interrupted record →
 * `resume` from its last checkpoint; a summary → nothing to do. Running it twice, or after a kill at
 * any point, ends with the record one uninterrupted run would have written.
 */
import { Effect, FileSystem, Schema } from "effect"
import { RunRecordError } from "../../domain/errors.ts"
import { backendLayer } from "../autoBackend.ts"
import * as Backend from "../Backend.ts"
import { resume, run } from "../run.ts"
import * as RunRecord from "../RunRecord.ts"
import type { StepRecord } from "../RunRecord.ts"
import * as Journal from "./journal.ts"
import type { PlannedRun } from "./plan.ts"

/** What a run directory holds, as far as a sweep is concerned. */
export type RunState = "absent" | "unfinished" | "completed" | "failed"

/** The error a summary records when its session was interrupted: it failed for no reason of its own. */
const interrupted = "interrupted"

/**
 * The state of the run recorded in `dir`: completed; failed for a reason of its own (it diverged, say);
 * or unfinished — no summary yet, or one that says it was interrupted (any status but those two, or a
 * failure by interruption), which `resume` continues.
 */
export const runState = Effect.fnUntraced(function*(dir: string) {
  const fs = yield* FileSystem.FileSystem
  const hasInfo = yield* fs.exists(`${dir}/${RunRecord.files.info}`).pipe(Effect.orElseSucceed(() => false))
  if (!hasInfo) return "absent" as RunState
  const summary = yield* RunRecord.readSummary(dir)
  const status: string | undefined = summary?.status
  return (status === "completed"
    ? "completed"
    : status === "failed" && summary?.error !== interrupted
    ? "failed"
    : "unfinished") as RunState
})

/** How one execution of a run went: `ran` from scratch, `resumed`, or `skipped` (recorded already). */
export const Outcome = Schema.Struct({
  id: Schema.String,
  dir: Schema.String,
  action: Schema.Literals(["ran", "resumed", "skipped"]),
  status: Schema.Literals(["completed", "failed"]),
  outerSteps: Schema.Number,
  /** The outer step a resumed run continued from. */
  resumedFrom: Schema.optional(Schema.Number),
  error: Schema.optional(Schema.String)
})
export type Outcome = typeof Outcome.Type

/** The `skipped` outcome of a run whose directory holds its end already; `undefined` while there is work to do. */
export const recorded = Effect.fnUntraced(function*(planned: PlannedRun) {
  const state = yield* runState(planned.dir)
  if (state !== "completed" && state !== "failed") return undefined
  const summary = (yield* RunRecord.readSummary(planned.dir))!
  return {
    id: planned.id,
    dir: planned.dir,
    action: "skipped",
    status: state,
    outerSteps: summary.outerSteps,
    ...(summary.error === undefined ? {} : { error: summary.error })
  } satisfies Outcome as Outcome
})

/** `Tag: message` of a typed failure, as the run's summary records it. */
const describe = (error: unknown): string =>
  typeof error === "object" && error !== null && "_tag" in error && "message" in error
    ? `${String(error._tag)}: ${String(error.message)}`
    : String(error)

/**
 * Runs (or resumes, or skips) `planned` on its backend; `onStep` sees each recorded outer step. A run
 * that fails (diverges, say) is an outcome with its error, recorded in its directory like any run's.
 */
export const execute = Effect.fnUntraced(function*(
  planned: PlannedRun,
  onStep?: (record: StepRecord, total: number) => Effect.Effect<void>
) {
  const fs = yield* FileSystem.FileSystem
  const ended = (action: Outcome["action"]) => (result: { readonly outerSteps: number; readonly resumedFrom?: number }) =>
    ({
      id: planned.id,
      dir: planned.dir,
      action,
      status: "completed",
      outerSteps: result.outerSteps,
      ...(result.resumedFrom === undefined ? {} : { resumedFrom: result.resumedFrom })
    }) satisfies Outcome
  const failed = (action: Outcome["action"]) => (error: unknown) =>
    Effect.map(RunRecord.readSummary(planned.dir).pipe(Effect.orElseSucceed(() => undefined)), (summary) =>
      ({
        id: planned.id,
        dir: planned.dir,
        action,
        status: "failed",
        outerSteps: summary?.outerSteps ?? 0,
        error: describe(error)
      }) satisfies Outcome)
  const journalEnd = (outcome: Outcome) =>
    Journal.append(planned.journal, {
      id: planned.id,
      event: "end",
      action: outcome.action === "resumed" ? "resumed" : "ran",
      status: outcome.status,
      ...(outcome.resumedFrom === undefined ? {} : { resumedFrom: outcome.resumedFrom })
    })
  const done = yield* recorded(planned)
  if (done !== undefined) return done
  const state = yield* runState(planned.dir)
  if (state === "absent") {
    yield* fs.remove(planned.dir, { recursive: true, force: true }).pipe(Effect.orDie)
    const request = { task: planned.task, method: planned.method, seed: planned.seed, settings: planned.settings }
    yield* Journal.append(planned.journal, { id: planned.id, event: "start", action: "ran" })
    return yield* run({ ...request, out: planned.dir, label: planned.label, checkpointEvery: planned.checkpointEvery, onStep }).pipe(
      Effect.provide(backendLayer(planned.backend, request)),
      Effect.map(ended("ran")),
      Effect.catch(failed("ran")),
      Effect.tap(journalEnd)
    )
  }
  const info = yield* RunRecord.readInfo(planned.dir)
  const backend = yield* Schema.decodeUnknownEffect(Backend.BackendName)(info.backend).pipe(
    Effect.mapError(() => new RunRecordError({ path: `${planned.dir}/${RunRecord.files.info}`, problem: `names the unknown backend "${info.backend}"` }))
  )
  yield* Journal.append(planned.journal, { id: planned.id, event: "start", action: "resumed" })
  // A run taken over from a runner that died on another machine still has its lock: wait for its heartbeat to lapse.
  return yield* resume({ dir: planned.dir, onStep, waitForLock: true }).pipe(
    Effect.provide(Backend.layer(backend)),
    Effect.map(ended("resumed")),
    Effect.catch(failed("resumed")),
    Effect.tap(journalEnd)
  )
})
