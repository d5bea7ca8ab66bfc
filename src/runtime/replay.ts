/**
 * `bilevel replay`: re-executes a recorded run from its run.json (task, method, seed, decoded config)
 * into a fresh directory and compares the two records step by step (docs/design.md, Determinism).
 *
 * What is compared: every field of every step record — F, k̄, the hypergradient norm, the cost
 * counters (inner and reverse steps, HVPs, peak bytes) and every task metric — and, when the record
 * has a summary, its status, step count, `final` block and error. What is not: timings (`ms`, `wallMs`
 * and any field named `…Ms` or `…MsPerStep`, such as hyper-cleaning's `meanMsPerStep`), the only
 * values that depend on the machine rather than on (task, method, config, seed, backend, library
 * versions); host fields (threads, start time, versions) live in run.json, which is not compared. With `tolerance` 0 (the default) numbers must be equal bit for
 * bit: the cpu backend delivers that (so does wasm, as measured; a multi-threaded or GPU backend may
 * reorder floating-point sums between runs). A replay on another backend than the recorded one
 * differs in the last float32 bits from step 0 on; a relative tolerance can be given for it.
 *
 * A record without a summary (a killed run), with an `interrupted` one or one rebuilt from its steps is
 * replayed up to its last recorded step and only its steps are compared; a failed run
 * (say `Diverged`) is replayed to its failure, and its steps and status are compared like any other.
 */
import { Effect, FileSystem } from "effect"
import { ReplayMismatch } from "../domain/errors.ts"
import { Backend } from "./Backend.ts"
import { type GivenInCode, recordedTaskAndMethod } from "./recordedRun.ts"
import * as RunRecord from "./RunRecord.ts"
import { run, type RunRequest } from "./run.ts"

/** Fields never compared, wherever they occur: wall-clock times, by the naming rule `ms`, `…Ms`, `…MsPerStep`. */
export const timingFields: ReadonlyArray<string> = ["ms", "*Ms", "*MsPerStep"]

const isTiming = (name: string) => name === "ms" || /Ms(PerStep)?$/.test(name)

export interface CompareOptions {
  /** Field names skipped wherever they occur (matched against the last segment of a path), besides the timings. */
  readonly ignore?: ReadonlyArray<string>
  /** Largest relative difference |a − b| / max(|a|, |b|) accepted between two numbers; 0: bit-identical. */
  readonly tolerance?: number
}

export interface Difference {
  /** The outer step (for the summary: the number of steps). */
  readonly step: number
  /** Dotted path of the field, e.g. `cost.innerSteps`, `final.xTail.mean`. */
  readonly field: string
  /** `undefined` where one side has no such field or step. */
  readonly recorded: unknown
  readonly replayed: unknown
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null

/** Flattens a JSON value into `path → leaf` pairs (arrays by index). */
const leaves = (value: unknown, prefix: string, out: Map<string, unknown>): Map<string, unknown> => {
  if (isObject(value)) {
    for (const [key, v] of Object.entries(value)) leaves(v, prefix === "" ? key : `${prefix}.${key}`, out)
  } else {
    out.set(prefix, value)
  }
  return out
}

const sameValue = (a: unknown, b: unknown, tolerance: number): boolean =>
  typeof a === "number" && typeof b === "number"
    ? a === b || Math.abs(a - b) <= tolerance * Math.max(Math.abs(a), Math.abs(b))
    : a === b

/** The first field where two JSON values differ, in the recorded value's field order. */
export const firstFieldDifference = (
  recorded: unknown,
  replayed: unknown,
  options: CompareOptions = {}
): { readonly field: string; readonly recorded: unknown; readonly replayed: unknown } | undefined => {
  const ignore = new Set(options.ignore ?? [])
  const skipped = (name: string) => isTiming(name) || ignore.has(name)
  const a = leaves(recorded, "", new Map())
  const b = leaves(replayed, "", new Map())
  const paths = [...new Set([...a.keys(), ...b.keys()])]
  const field = paths.find((path) =>
    !skipped(path.split(".").at(-1)!) && (a.has(path) !== b.has(path) || !sameValue(a.get(path), b.get(path), options.tolerance ?? 0))
  )
  return field === undefined ? undefined : { field, recorded: a.get(field), replayed: b.get(field) }
}

/** The first difference between two step sequences, step by step; a missing step differs in `t`. */
export const firstStepDifference = (
  recorded: ReadonlyArray<RunRecord.StepRecord>,
  replayed: ReadonlyArray<RunRecord.StepRecord>,
  options: CompareOptions = {}
): Difference | undefined => {
  for (let step = 0; step < Math.max(recorded.length, replayed.length); step++) {
    const a = recorded[step]
    const b = replayed[step]
    if (a === undefined || b === undefined) return { step, field: "t", recorded: a?.t, replayed: b?.t }
    const difference = firstFieldDifference(a, b, options)
    if (difference !== undefined) return { step, ...difference }
  }
  return undefined
}

/** The first difference between two run records: their steps, then (when both have one) their summaries. */
export const firstDifference = (
  recorded: RunRecord.RunRecord,
  replayed: RunRecord.RunRecord,
  options: CompareOptions = {}
): Difference | undefined => {
  const steps = firstStepDifference(recorded.steps, replayed.steps, options)
  if (steps !== undefined || recorded.summary === undefined || replayed.summary === undefined) return steps
  const pick = (s: RunRecord.Summary) => ({ status: s.status, outerSteps: s.outerSteps, final: s.final, error: s.error })
  const summary = firstFieldDifference(pick(recorded.summary), pick(replayed.summary), options)
  return summary === undefined ? undefined : { step: recorded.steps.length, ...summary, field: `summary.${summary.field}` }
}

export interface ReplayRequest extends GivenInCode {
  /** The recorded run directory. */
  readonly dir: string
  /** Where the replay writes its record (must not exist); default a temporary directory, removed afterwards. */
  readonly out?: string | undefined
  readonly ignore?: ReadonlyArray<string> | undefined
  readonly tolerance?: number | undefined
  readonly onStep?: RunRequest["onStep"]
}

export interface ReplayReport {
  readonly dir: string
  readonly task: string
  readonly method: string
  readonly seed: number
  readonly recordedBackend: string
  readonly backend: string
  readonly identical: boolean
  readonly recordedSteps: number
  readonly replayedSteps: number
  /** Fields skipped, wherever they occur. */
  readonly ignored: ReadonlyArray<string>
  readonly tolerance: number
  readonly firstDifference?: Difference
  /** Library versions of the record that differ from this installation's (a likely cause of a difference). */
  readonly versionChanges?: Record<string, { readonly recorded: string; readonly current: string | undefined }>
  /** The replay's own record, when kept (`out`). */
  readonly replayDir?: string
}

/**
 * Replays the run recorded in `request.dir` on the provided backend and reports whether its record
 * matches. The report is returned either way; {@link assertIdentical} turns a difference into a
 * `ReplayMismatch`. Failures to read the record or to start the run are typed errors.
 */
export const replay = Effect.fnUntraced(function*(request: ReplayRequest) {
  const backend = yield* Backend
  const fs = yield* FileSystem.FileSystem
  const read = yield* RunRecord.read(request.dir)
  // Only a summary the run wrote at its end is compared; an interrupted or rebuilt one says where it stopped.
  const recorded = read.summary?.status === "interrupted" ? { ...read, summary: undefined } : read
  const { info } = recorded
  const { method, task } = yield* recordedTaskAndMethod(request.dir, info, request)
  const inCode = info.definedInCode ?? []
  const out = request.out ?? `${yield* fs.makeTempDirectoryScoped({ prefix: "bilevel-replay-" }).pipe(Effect.orDie)}/run`
  // By name where the record names them, so the replay's own record says the same.
  const replayed = yield* run({
    task: inCode.includes("task") ? task : info.task,
    taskModule: info.taskModule,
    method: inCode.includes("method") ? method : info.method,
    seed: info.seed,
    settings: info.config,
    out,
    label: info.label,
    checkpointEvery: 0,
    stopAfter: recorded.summary === undefined ? recorded.steps.length : undefined,
    onStep: request.onStep
  }).pipe(
    // A run that diverged recorded its steps and its failure: that record is what is compared.
    Effect.catchTag("Diverged", () => Effect.void),
    Effect.andThen(RunRecord.read(out))
  )
  const options = { ignore: request.ignore ?? [], tolerance: request.tolerance ?? 0 }
  const difference = firstDifference(recorded, replayed, options)
  const current = yield* RunRecord.readInfo(out)
  const changes = Object.entries(info.versions).filter(([name, version]) => current.versions[name] !== version)
  return {
    dir: request.dir,
    task: info.task,
    method: info.method,
    seed: info.seed,
    recordedBackend: info.backend,
    backend: backend.name,
    identical: difference === undefined,
    recordedSteps: recorded.steps.length,
    replayedSteps: replayed.steps.length,
    ignored: [...timingFields, ...options.ignore],
    tolerance: options.tolerance,
    ...(difference === undefined ? {} : { firstDifference: difference }),
    ...(changes.length === 0 ? {} : {
      versionChanges: Object.fromEntries(changes.map(([name, version]) => [name, { recorded: version, current: current.versions[name] }]))
    }),
    ...(request.out === undefined ? {} : { replayDir: out })
  } satisfies ReplayReport
}, Effect.scoped)

/** Fails with `ReplayMismatch` at the report's first difference. */
export const assertIdentical = (report: ReplayReport): Effect.Effect<ReplayReport, ReplayMismatch> =>
  report.firstDifference === undefined
    ? Effect.succeed(report)
    : Effect.fail(new ReplayMismatch({ dir: report.dir, ...report.firstDifference }))
