/**
 * A run record: the directory a run writes and `replay`, `plot`, `compare` and `resume` read.
 *
 *   run.json      what was run: task, method, label, backend, seed, decoded config, versions, start time
 *   steps.ndjson  one line per outer step: { t, F, kbar, hypergradNorm, ms, cost, ...task metrics }
 *   summary.json  how it ended: status, final metrics, wall time, and the error if it failed
 *
 * Steps are appended as they happen, so a failed or killed run keeps everything up to its last step.
 */
import { Effect, FileSystem, Schema } from "effect"
import { Cost } from "../domain/Cost.ts"
import { RunRecordError } from "../domain/errors.ts"

export { Cost }

export const RunInfo = Schema.Struct({
  task: Schema.String,
  method: Schema.String,
  /** Legend name in plots and tables; defaults to the method. */
  label: Schema.String,
  backend: Schema.String,
  seed: Schema.Number,
  config: Schema.Record(Schema.String, Schema.Unknown),
  versions: Schema.Record(Schema.String, Schema.String),
  startedAt: Schema.String
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
  status: Schema.Literals(["completed", "failed"]),
  outerSteps: Schema.Number,
  final: Schema.Record(Schema.String, Schema.Unknown),
  wallMs: Schema.Number,
  error: Schema.optional(Schema.String)
})
export type Summary = typeof Summary.Type

export interface RunRecord {
  readonly dir: string
  readonly info: RunInfo
  readonly steps: ReadonlyArray<StepRecord>
  readonly summary: Summary | undefined
}

const files = { info: "run.json", steps: "steps.ndjson", summary: "summary.json" } as const

const fail = (path: string, problem: string) => new RunRecordError({ path, problem })

const decodeJson = <S extends Schema.Top>(schema: S, path: string) => (text: string) =>
  Effect.try({ try: () => JSON.parse(text) as unknown, catch: () => fail(path, "is not valid JSON") }).pipe(
    Effect.flatMap(Schema.decodeUnknownEffect(schema as any)),
    Effect.mapError((e) => e instanceof RunRecordError ? e : fail(path, `does not match the run-record format: ${e}`))
  ) as Effect.Effect<S["Type"], RunRecordError, S["DecodingServices"]>

/** Reads a run directory written by {@link writer}. */
export const read = Effect.fnUntraced(function*(dir: string) {
  const fs = yield* FileSystem.FileSystem
  const readText = (name: string) =>
    fs.readFileString(`${dir}/${name}`).pipe(Effect.mapError(() => fail(`${dir}/${name}`, "cannot be read (is this a run directory?)")))
  const info = yield* readText(files.info).pipe(Effect.flatMap(decodeJson(RunInfo, `${dir}/${files.info}`)))
  const stepsText = yield* readText(files.steps)
  const steps = yield* Effect.forEach(
    stepsText.split("\n").filter((line) => line.trim() !== ""),
    (line, i) => decodeJson(StepRecord, `${dir}/${files.steps} line ${i + 1}`)(line)
  )
  const hasSummary = yield* fs.exists(`${dir}/${files.summary}`).pipe(Effect.orElseSucceed(() => false))
  const summary = hasSummary
    ? yield* readText(files.summary).pipe(Effect.flatMap(decodeJson(Summary, `${dir}/${files.summary}`)))
    : undefined
  return { dir, info, steps, summary } satisfies RunRecord
})

export interface Writer {
  readonly dir: string
  readonly appendStep: (step: StepRecord) => Effect.Effect<void, RunRecordError>
  readonly finish: (summary: Summary) => Effect.Effect<void, RunRecordError>
}

/** Creates `dir` (which must not exist yet, so nothing is overwritten) and writes run.json. */
export const writer = Effect.fnUntraced(function*(dir: string, info: RunInfo) {
  const fs = yield* FileSystem.FileSystem
  const exists = yield* fs.exists(dir).pipe(Effect.orElseSucceed(() => false))
  if (exists) {
    return yield* fail(dir, "already exists; choose another --out directory or remove it (runs are never overwritten)")
  }
  const write = (name: string, text: string, flag: "w" | "a") =>
    fs.writeFileString(`${dir}/${name}`, text, { flag }).pipe(
      Effect.mapError((e) => fail(`${dir}/${name}`, `cannot be written: ${e.message}`))
    )
  yield* fs.makeDirectory(dir, { recursive: true }).pipe(
    Effect.mapError((e) => fail(dir, `cannot be created: ${e.message}. Choose a writable --out directory`))
  )
  yield* write(files.info, JSON.stringify(info, null, 2) + "\n", "w")
  yield* write(files.steps, "", "w")
  return {
    dir,
    appendStep: (step) => write(files.steps, JSON.stringify(step) + "\n", "a"),
    finish: (summary) => write(files.summary, JSON.stringify(summary, null, 2) + "\n", "w")
  } satisfies Writer
})
