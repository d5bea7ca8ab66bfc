/**
 * The runs of an experiment: ordinary `run`s, each recorded in its own subdirectory of the
 * experiment's directory, read back as run records for figures and tables.
 */
import { Effect, FileSystem } from "effect"
import { type Diverged, type HypergradientFailed, InvalidConfig, RunRecordError } from "../../domain/errors.ts"
import { methods as allMethods } from "../../solvers/methods.ts"
import { resume, run, type RunResult } from "../run.ts"
import * as RunRecord from "../RunRecord.ts"
import type { ExperimentOptions } from "./Experiment.ts"

export interface RunSpec {
  /** Subdirectory of the experiment's directory. */
  readonly dir: string
  /** Legend name in figures and tables. */
  readonly label: string
  readonly task: string
  readonly method: string
  readonly seed: number
  readonly settings: Record<string, unknown>
  /** Checkpoint interval; default the run's. */
  readonly checkpointEvery?: number | undefined
}

type Options = Pick<ExperimentOptions<unknown>, "out" | "overwrite" | "progress" | "handleSignals">

/**
 * After a run that a signal ended early (its own line says how to go on), no further run starts and
 * no report is written from the partial record: the experiment is interrupted. (On the command line
 * the runtime's own interruption usually gets there first.)
 */
const stopAfterSignal = (result: RunResult | void) => result?.signal === undefined ? Effect.void : Effect.interrupt

/** A fresh run of `spec` into `dir`; `continueWith` is what its line after a signal says goes on with it. */
const runSpec = (spec: RunSpec, dir: string, options: Options, continueWith?: string) =>
  run({
    task: spec.task,
    method: spec.method,
    seed: spec.seed,
    settings: spec.settings,
    out: dir,
    label: spec.label,
    checkpointEvery: spec.checkpointEvery,
    handleSignals: options.handleSignals,
    continueWith
  })

/**
 * Refuses (or, with `overwrite`, removes) run records left in the way, all before the first run, so a
 * long experiment never stops halfway on a name clash. Only directories holding a run.json are removed.
 */
const clearWay = Effect.fnUntraced(function*(specs: ReadonlyArray<RunSpec>, options: Options) {
  const fs = yield* FileSystem.FileSystem
  for (const spec of specs) {
    const dir = `${options.out}/${spec.dir}`
    if (!(yield* fs.exists(dir))) continue
    if (!options.overwrite) {
      return yield* new RunRecordError({
        path: dir,
        problem: "already exists; pass --overwrite to replace this experiment's earlier runs, or choose another --out"
      })
    }
    if (!(yield* fs.exists(`${dir}/run.json`))) {
      return yield* new RunRecordError({ path: dir, problem: "is in the way and is not a run record; move it away" })
    }
    yield* fs.remove(dir, { recursive: true })
  }
})

/**
 * Runs `specs` one after another (so no run's timing is disturbed by another's) and returns their
 * records in order. A run that diverges, or whose hypergradient cannot be computed (LS and NS where the LL Hessian is
 * indefinite), is kept: its record ends with status "failed" and the error, which is a result of the experiment.
 */
export const runAll = Effect.fnUntraced(function*(specs: ReadonlyArray<RunSpec>, options: Options) {
  yield* clearWay(specs, options)
  return yield* Effect.forEach(specs, (spec, i) =>
    Effect.gen(function*() {
      const dir = `${options.out}/${spec.dir}`
      const result = yield* runSpec(spec, dir, options).pipe(Effect.catchTag(["Diverged", "HypergradientFailed"], () => Effect.void))
      yield* stopAfterSignal(result)
      const record = yield* RunRecord.read(dir)
      const status = record.summary?.status ?? "unfinished"
      const seconds = ((record.summary?.wallMs ?? 0) / 1000).toFixed(1)
      yield* options.progress(
        `[${i + 1}/${specs.length}] ${spec.label}, seed ${spec.seed}: ${status}, ${record.steps.length} outer steps in ${seconds} s`
      )
      return record
    }))
})

/**
 * Runs the specs without a complete record, one after another, for experiments whose methods may be run
 * by separate invocations (in parallel, or across sessions): a complete record is kept and an unfinished
 * one (a killed or stopped run) resumed from its checkpoint, unless `overwrite`; a failed one, or one whose
 * settings are not the spec's, is refused saying what to do. The command line is appended to the
 * experiment's `commands.txt`. A run that diverges or whose hypergradient fails keeps its record.
 */
export const runMissing = Effect.fnUntraced(function*(
  specs: ReadonlyArray<RunSpec>,
  options: Options & Pick<ExperimentOptions<unknown>, "command">
) {
  const fs = yield* FileSystem.FileSystem
  const resumeAdvice = "the same command without --overwrite (it resumes this record, then runs the rest)"
  for (const spec of specs) {
    const dir = `${options.out}/${spec.dir}`
    let unfinished = false
    if (yield* fs.exists(dir)) {
      const existing = yield* RunRecord.read(dir)
      if (!options.overwrite && existing.summary?.status === "completed") {
        yield* options.progress(`${spec.label}: complete record in ${dir}, not run again (--overwrite replaces it)`)
        continue
      }
      if (options.overwrite) {
        yield* fs.remove(dir, { recursive: true })
      } else {
        const differing = Object.keys(spec.settings).filter((k) => JSON.stringify(existing.info.config[k]) !== JSON.stringify(spec.settings[k]))
        if (existing.summary?.status === "failed" || existing.info.method !== spec.method || differing.length > 0) {
          const why = existing.summary?.status === "failed"
            ? "holds a failed run"
            : `holds an unfinished run with other settings (${differing.join(", ") || "method"})`
          return yield* new InvalidConfig({ message: `${dir} ${why}: --overwrite (or removing it) runs ${spec.label} again.` })
        }
        yield* options.progress(`${spec.label}: unfinished record in ${dir} (${existing.steps.length} steps), resuming it`)
        unfinished = true
      }
    }
    const result: RunResult | Diverged | HypergradientFailed = yield* (unfinished
      ? resume({ dir, handleSignals: options.handleSignals, continueWith: resumeAdvice })
      : runSpec(spec, dir, options, resumeAdvice)).pipe(Effect.catchTag(["Diverged", "HypergradientFailed"], (e) => Effect.succeed(e)))
    yield* options.progress(
      `${spec.label}: ${
        "_tag" in result
          ? `${result._tag} (see its record)`
          : `${result.outerSteps} outer steps${result.resumedFrom === undefined ? "" : ` (resumed from step ${result.resumedFrom})`} in ${(result.wallMs / 1000).toFixed(0)} s`
      }`
    )
    if (!("_tag" in result)) yield* stopAfterSignal(result)
  }
  yield* fs.writeFileString(`${options.out}/commands.txt`, `${options.command}  # ${new Date().toISOString()}\n`, { flag: "a" })
})

/**
 * The methods of a comma-separated `methods` setting, for experiments that run one seed per method into
 * `records/<method>`: an unknown name or more than one seed is refused up front.
 */
export const chosenMethods = (experiment: string, methods: string, seeds: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const chosen = methods.split(",").map((m) => m.trim()).filter((m) => m !== "")
    const unknown = chosen.filter((m) => !allMethods.some((known) => known.name === m))
    if (unknown.length > 0) {
      return yield* new InvalidConfig({ message: `Unknown method(s) ${unknown.join(", ")}; see \`bilevel methods\`.` })
    }
    if (seeds.length !== 1) {
      return yield* new InvalidConfig({ message: `${experiment} runs one seed per method (--seeds N); use another --out per seed.` })
    }
    return chosen
  })
