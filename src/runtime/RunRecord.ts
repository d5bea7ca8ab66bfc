/**
 * A run record: the directory a run writes and `replay`, `plot`, `compare` and `resume` read.
 *
 *   run.json         what was run: task, method, label, backend (and its threads), seed, decoded config, versions, start
 *                    time, checkpoint interval
 *   steps.ndjson     one line per outer step: { t, F, kbar, hypergradNorm, ms, cost, ...task metrics }
 *   summary.json     how it ended: status, final metrics, wall time, and the error if it failed
 *   checkpoint.json  the UL state after the last checkpointed step (see `checkpoint.ts`)
 *   x.npy, z.npy, y.npy  the learned variables, NumPy arrays written with each checkpoint and at the end (`arrays.ts`)
 *   run.lock         while a process writes the directory: its pid and host (see `runLock.ts`)
 *
 * Steps are appended as they happen, so a failed or killed run keeps everything up to its last step;
 * every file written whole (run.json, summary, checkpoint, truncated steps on resume) is written
 * atomically, and a summary torn by something else is rebuilt from the steps when read.
 */
import { Effect, FileSystem, type PlatformError, Schema } from "effect"
import * as path from "node:path"
import { Cost } from "../domain/Cost.ts"
import { RunRecordError, systemProblem } from "../domain/errors.ts"

export { Cost }

export const RunInfo = Schema.Struct({
  task: Schema.String,
  method: Schema.String,
  /** Legend name in plots and tables; defaults to the method. */
  label: Schema.String,
  backend: Schema.String,
  /** Threads the backend's kernels ran on (speed only: results do not depend on it); absent in older records. */
  threads: Schema.optional(Schema.Number),
  seed: Schema.Number,
  config: Schema.Record(Schema.String, Schema.Unknown),
  versions: Schema.Record(Schema.String, Schema.String),
  startedAt: Schema.String,
  /** A checkpoint is written every this many outer steps (0: never); absent in records from before checkpoints. */
  checkpointEvery: Schema.optional(Schema.Number),
  /** Absolute path of the user's module the task came from (`bilevel run ./ridge.ts`); absent for built-in tasks. */
  taskModule: Schema.optional(Schema.String),
  /**
   * Which of task and method were values given in code (`run({ task: defineTask(…) })`) that no file
   * records: `resume` and `replay` must be handed the same values again.
   */
  definedInCode: Schema.optional(Schema.Array(Schema.Literals(["task", "method"]))),
  /** The command line that started the run, when it came from the CLI. */
  command: Schema.optional(Schema.Array(Schema.String)),
  /** The git commit of the directory the run was started in, when it is a repository. */
  git: Schema.optional(Schema.Struct({ commit: Schema.String, dirty: Schema.Boolean }))
})
export type RunInfo = typeof RunInfo.Type

export const StepRecord = Schema.StructWithRest(
  Schema.Struct({
    t: Schema.Number,
    F: Schema.Number,
    kbar: Schema.Number,
    hypergradNorm: Schema.Number,
    ms: Schema.Number,
    cost: Cost
  }),
  [Schema.Record(Schema.String, Schema.Unknown)]
)
export type StepRecord = typeof StepRecord.Type

export const Summary = Schema.Struct({
  /** `interrupted`: stopped by a signal (or its summary was lost) before the end; `bilevel resume` continues it. */
  status: Schema.Literals(["completed", "failed", "interrupted"]),
  outerSteps: Schema.Number,
  final: Schema.Record(Schema.String, Schema.Unknown),
  /** Wall time of the session that finished the run (the last resume, if any). */
  wallMs: Schema.Number,
  error: Schema.optional(Schema.String),
  /** The outer step the last `bilevel resume` continued from. */
  resumedFrom: Schema.optional(Schema.Number),
  /** The signal that interrupted the run. */
  signal: Schema.optional(Schema.String),
  /** Set when summary.json was unreadable and this summary was rebuilt from steps.ndjson: why. */
  rebuilt: Schema.optional(Schema.String)
})
export type Summary = typeof Summary.Type

export interface RunRecord {
  readonly dir: string
  readonly info: RunInfo
  readonly steps: ReadonlyArray<StepRecord>
  readonly summary: Summary | undefined
}

export const files = {
  info: "run.json",
  steps: "steps.ndjson",
  summary: "summary.json",
  checkpoint: "checkpoint.json",
  lock: "run.lock"
} as const

const fail = (path: string, problem: string) => new RunRecordError({ path, problem })

/** A failed file operation on `path` as a run-record error: `cannot be written: ENOSPC: …`. */
export const fileFailure = (path: string, what: string) => (error: PlatformError.PlatformError) =>
  fail(path, `cannot be ${what}: ${systemProblem(error)}`)

const decodeJson = <S extends Schema.Top>(schema: S, path: string) => (text: string) =>
  Effect.try({ try: () => JSON.parse(text) as unknown, catch: () => fail(path, "is not valid JSON") }).pipe(
    Effect.flatMap(Schema.decodeUnknownEffect(schema as any)),
    Effect.mapError((e) => e instanceof RunRecordError ? e : fail(path, `does not match the run-record format: ${e}`))
  ) as Effect.Effect<S["Type"], RunRecordError, S["DecodingServices"]>

const readText = Effect.fnUntraced(function*(dir: string, name: string) {
  const fs = yield* FileSystem.FileSystem
  return yield* fs.readFileString(`${dir}/${name}`).pipe(
    Effect.mapError((e) =>
      fail(
        `${dir}/${name}`,
        e.reason._tag === "NotFound" ? "does not exist (is this a run directory?)" : `cannot be read: ${systemProblem(e)}`
      )
    )
  )
})

/** The run.json of a run directory. */
export const readInfo = (dir: string) =>
  readText(dir, files.info).pipe(Effect.flatMap(decodeJson(RunInfo, `${dir}/${files.info}`)))

/**
 * The summary.json of a run directory, if the run got to write one. A summary that is empty, torn
 * or not a summary (the record of a release that wrote it in place, killed mid-write; a damaged
 * disk) is rebuilt from steps.ndjson, status `interrupted` so that `resume` can finish the run,
 * with `rebuilt` saying why; only when the steps cannot be read either is it an error.
 */
export const readSummary = Effect.fnUntraced(function*(dir: string) {
  const fs = yield* FileSystem.FileSystem
  const hasSummary = yield* fs.exists(`${dir}/${files.summary}`).pipe(Effect.orElseSucceed(() => false))
  if (!hasSummary) return undefined
  const decoded = yield* readText(dir, files.summary).pipe(
    Effect.flatMap(decodeJson(Summary, `${dir}/${files.summary}`)),
    Effect.result
  )
  if (decoded._tag === "Success") return decoded.success
  const steps = yield* readSteps(dir).pipe(Effect.mapError(() => decoded.failure))
  const last = steps.at(-1)
  const { cost: _cost, ms: _ms, t: _t, ...metrics } = last ?? { cost: undefined, ms: undefined, t: undefined }
  return {
    status: "interrupted",
    outerSteps: steps.length,
    final: metrics,
    wallMs: 0,
    rebuilt: `${files.summary} ${decoded.failure.problem}; rebuilt from ${files.steps} (${steps.length} steps)`
  } satisfies Summary as Summary
})

/**
 * The recorded steps. Every line must be a step record whose `t` is its line index; with `keep`,
 * only the first `keep` lines are read and must exist, and what follows them (steps recorded after
 * a checkpoint, a line cut short by a kill) is ignored.
 */
export const readSteps = Effect.fnUntraced(function*(dir: string, options: { readonly keep?: number } = {}) {
  const path = `${dir}/${files.steps}`
  const lines = (yield* readText(dir, files.steps)).split("\n")
  if (lines.at(-1) === "") lines.pop()
  if (options.keep !== undefined && lines.length < options.keep) {
    return yield* fail(path, `holds ${lines.length} steps, fewer than the ${options.keep} its checkpoint covers: the record is truncated`)
  }
  const kept = options.keep === undefined ? lines : lines.slice(0, options.keep)
  return yield* Effect.forEach(kept, (line, i) =>
    decodeJson(StepRecord, `${path} line ${i + 1}`)(line).pipe(
      Effect.filterOrFail(
        (step) => step.t === i,
        (step) => fail(`${path} line ${i + 1}`, `records outer step ${step.t} where step ${i} belongs: the record is corrupt`)
      )
    ))
})

/** Reads a run directory written by {@link writer}. */
export const read = Effect.fnUntraced(function*(dir: string) {
  const info = yield* readInfo(dir)
  const steps = yield* readSteps(dir)
  const summary = yield* readSummary(dir)
  return { dir, info, steps, summary } satisfies RunRecord
})

/**
 * Replaces `path` whole, atomically: writes a temporary file beside it, flushes it to disk, then
 * renames it over `path`. A crash leaves the old file or the new one, never a torn one.
 */
export const writeAtomically = Effect.fnUntraced(function*(path: string, text: string | Uint8Array) {
  const fs = yield* FileSystem.FileSystem
  const temporary = `${path}.tmp`
  yield* Effect.scoped(Effect.gen(function*() {
    const file = yield* fs.open(temporary, { flag: "w" })
    yield* file.writeAll(typeof text === "string" ? new TextEncoder().encode(text) : text)
    yield* file.sync
  })).pipe(
    Effect.andThen(fs.rename(temporary, path)),
    // A full disk or a revoked permission leaves no orphan temporary file behind.
    Effect.tapError(() => fs.remove(temporary, { force: true }).pipe(Effect.ignore)),
    Effect.mapError(fileFailure(path, "written"))
  )
})

export interface Writer {
  readonly dir: string
  readonly appendStep: (step: StepRecord) => Effect.Effect<void, RunRecordError>
  readonly finish: (summary: Summary) => Effect.Effect<void, RunRecordError>
}

const writerOf = (fs: FileSystem.FileSystem, dir: string): Writer => ({
  dir,
  appendStep: (step) =>
    fs.writeFileString(`${dir}/${files.steps}`, JSON.stringify(step) + "\n", { flag: "a" }).pipe(
      Effect.mapError(fileFailure(`${dir}/${files.steps}`, "written"))
    ),
  finish: (summary) =>
    writeAtomically(`${dir}/${files.summary}`, JSON.stringify(summary, null, 2) + "\n").pipe(
      Effect.provideService(FileSystem.FileSystem, fs)
    )
})

/**
 * Creates the run directory `dir`, which must not exist yet (so nothing is overwritten): missing
 * parents one at a time below the nearest existing one, which must be a directory, and `dir` itself
 * exclusively, so that of two runs given the same `--out` one fails. (Node's recursive mkdir spins
 * forever under /proc, where mkdir answers ENOENT; one level at a time, that answer is an error.)
 */
export const makeRunDirectory = Effect.fnUntraced(function*(dir: string) {
  const fs = yield* FileSystem.FileSystem
  const remedy = "Choose a writable --out directory on a real file system"
  const missing: Array<string> = []
  let parent = path.resolve(dir)
  while (!(yield* fs.exists(parent).pipe(Effect.orElseSucceed(() => false)))) {
    missing.unshift(parent)
    if (path.dirname(parent) === parent) break
    parent = path.dirname(parent)
  }
  if (missing.length === 0) {
    return yield* fail(dir, "already exists; choose another --out directory or remove it (runs are never overwritten)")
  }
  const info = yield* fs.stat(parent).pipe(Effect.mapError(fileFailure(parent, "inspected")))
  if (info.type !== "Directory") return yield* fail(dir, `cannot be created: ${parent} is not a directory. ${remedy}`)
  yield* Effect.forEach(missing, (level) =>
    fs.makeDirectory(level).pipe(
      Effect.mapError((e) =>
        fail(
          dir,
          e.reason._tag === "AlreadyExists"
            ? "already exists; choose another --out directory or remove it (runs are never overwritten)"
            : `cannot be created: ${systemProblem(e)}. ${remedy}`
        )
      )
    ), { discard: true })
})

/** Starts the record in the new, empty run directory `dir`: run.json and an empty steps.ndjson. */
export const start = Effect.fnUntraced(function*(dir: string, info: RunInfo) {
  const fs = yield* FileSystem.FileSystem
  yield* writeAtomically(`${dir}/${files.info}`, JSON.stringify(info, null, 2) + "\n")
  yield* writeAtomically(`${dir}/${files.steps}`, "")
  return writerOf(fs, dir)
})

/** Creates `dir` (see {@link makeRunDirectory}) and starts its record. */
export const writer = (dir: string, info: RunInfo) => Effect.andThen(makeRunDirectory(dir), start(dir, info))

/**
 * Reopens an interrupted run directory to continue it: steps.ndjson is cut back to `steps` (those
 * recorded up to the checkpoint), atomically, and the stale summary of a failed attempt is removed,
 * so until the run finishes again the record reads as unfinished.
 */
export const reopen = Effect.fnUntraced(function*(dir: string, steps: ReadonlyArray<StepRecord>) {
  const fs = yield* FileSystem.FileSystem
  yield* writeAtomically(`${dir}/${files.steps}`, steps.map((step) => JSON.stringify(step) + "\n").join(""))
  yield* fs.remove(`${dir}/${files.summary}`, { force: true }).pipe(
    Effect.mapError(fileFailure(`${dir}/${files.summary}`, "removed"))
  )
  return writerOf(fs, dir)
})
