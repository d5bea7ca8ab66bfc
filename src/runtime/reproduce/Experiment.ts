/**
 * An experiment of `bilevel reproduce`: a program that reproduces one of a paper's figures or tables
 * with this framework and writes its runs, figures and a Markdown report into one directory.
 *
 * Experiments are values in a registry (`experiments.ts`), like tasks and methods; the CLI makes one
 * subcommand of each, with the same flags (`--out`, `--backend`, `--seeds`, `--set`, `--overwrite`).
 * An experiment's own settings are a Schema struct with defaults, set with `--set key=value`: that is
 * how a smaller version runs (e.g. `--set outerSteps=20`) and how an experiment takes what only it
 * needs (a dataset directory, say).
 */
import { Effect, Schema } from "effect"
import type { FileSystem } from "effect"
import type { PlatformError } from "effect/PlatformError"
import type { DatasetError, InsufficientMemory, RunLocked, RunRecordError, TaskModuleError, UnknownName } from "../../domain/errors.ts"
import { type HypergradientFailed, InvalidConfig, type InvalidSolver } from "../../domain/errors.ts"
import type { Backend, BackendName } from "../Backend.ts"
import type { PlotError } from "../plot.ts"

export interface ExperimentOptions<S> {
  /** Directory of the runs, figures and report. */
  readonly out: string
  readonly seeds: ReadonlyArray<number>
  readonly settings: S
  /** The command line that reproduces this experiment, quoted in its report. */
  readonly command: string
  /** Replace run records an earlier reproduction left in `out` (otherwise they are never overwritten). */
  readonly overwrite: boolean
  /** Receives one line per finished run (progress on a terminal). */
  readonly progress: (line: string) => Effect.Effect<void>
  /**
   * End a run cleanly on SIGINT/SIGTERM (see `run`'s `handleSignals`) and start no further one: the
   * experiment is then interrupted, and its records resume where they stopped. For a command-line process.
   */
  readonly handleSignals?: boolean | undefined
}

/** One of an issue's acceptance bars, evaluated on the measured runs. */
export interface Check {
  readonly name: string
  readonly passed: boolean
  /** The measured values the verdict rests on. */
  readonly detail: string
}

export interface ExperimentResult {
  /** Path of the Markdown report. */
  readonly report: string
  readonly checks: ReadonlyArray<Check>
  readonly wallMs: number
}

/** What an experiment can fail with; a diverging run is not a failure (its record says so). */
export type ExperimentError =
  | InvalidSolver
  | HypergradientFailed
  | InvalidConfig
  | UnknownName
  | RunRecordError
  | RunLocked
  | InsufficientMemory
  | DatasetError
  | TaskModuleError
  | PlotError
  | PlatformError

export interface Experiment<S = any> {
  readonly name: string
  readonly description: string
  /** The backend the report's numbers are meant to be measured on unless `--backend` says otherwise. */
  readonly defaultBackend: BackendName
  readonly defaultSeeds: ReadonlyArray<number>
  readonly settings: Schema.Codec<S, unknown>
  readonly run: (
    options: ExperimentOptions<S>
  ) => Effect.Effect<ExperimentResult, ExperimentError, Backend | FileSystem.FileSystem>
}

/** An experiment with its settings type erased for the registry (they are decoded by its own schema first). */
export const define = <F extends Schema.Struct.Fields>(experiment: {
  readonly name: string
  readonly description: string
  readonly defaultBackend: BackendName
  readonly defaultSeeds: ReadonlyArray<number>
  readonly settings: Schema.Struct<F>
  readonly run: (
    options: ExperimentOptions<Schema.Struct<F>["Type"]>
  ) => Effect.Effect<ExperimentResult, ExperimentError, Backend | FileSystem.FileSystem>
}): Experiment => experiment as unknown as Experiment

/** Decodes `--set` values against the experiment's settings; unknown keys are an error naming the known ones. */
export const decodeSettings = (experiment: Experiment, values: Record<string, unknown>) =>
  Schema.decodeUnknownEffect(experiment.settings)(values, { onExcessProperty: "error", errors: "all" }).pipe(
    Effect.mapError((e) =>
      new InvalidConfig({
        message: `Invalid settings for experiment ${experiment.name}:\n${e.message}\n` +
          `See \`bilevel reproduce ${experiment.name} --help\` for its settings.`
      })
    )
  )
