/**
 * A sweep: one task, several methods, several seeds and a grid of settings, as a JSON or YAML file.
 *
 *   task: toy-nonconvex
 *   methods: [rhg, { method: ls, settings: { cgIters: 50 } }]
 *   seeds: [0, 1, 2]
 *   settings: { outerSteps: 200 }        # every run
 *   grid: { innerSteps: [20, 40] }       # every combination
 *   backend: cpu
 *   metrics: [F, xError]                 # the closing table: mean ± std over seeds
 *
 * Decoded with Schema, so a mistake names its key; the runs it stands for are `plan.ts`'s.
 */
import { Effect, FileSystem, Schema } from "effect"
import * as Yaml from "yaml"
import { InvalidConfig } from "../../domain/errors.ts"
import { BackendChoice } from "../Backend.ts"

const Settings = Schema.Record(Schema.String, Schema.Unknown)

/** A method with settings of its own (keys only it takes, such as `cgIters`) and an optional legend name. */
export const MethodEntry = Schema.Struct({
  method: Schema.String,
  label: Schema.optional(Schema.String),
  settings: Schema.optional(Settings)
})
export type MethodEntry = typeof MethodEntry.Type

const Seed = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))

export const SweepSpec = Schema.Struct({
  task: Schema.String,
  methods: Schema.Array(Schema.Union([Schema.String, MethodEntry])).check(Schema.isMinLength(1)),
  seeds: Schema.Array(Seed).check(Schema.isMinLength(1)),
  /** Settings of every run (the task's and the methods' keys). */
  settings: Schema.optional(Settings),
  /** key → the values to sweep; the runs are every combination. */
  grid: Schema.optional(Schema.Record(Schema.String, Schema.Array(Schema.Unknown).check(Schema.isMinLength(1)))),
  backend: Schema.optional(BackendChoice),
  /** Final metrics of the table a sweep ends with (mean ± std over seeds per configuration; default: all). */
  metrics: Schema.optional(Schema.Array(Schema.String)),
  /** Checkpoint every this many outer steps (default run.ts's): how much an interrupted run recomputes. */
  checkpointEvery: Schema.optional(Schema.Int.check(Schema.isGreaterThanOrEqualTo(0)))
})
export type SweepSpec = typeof SweepSpec.Type

/** Backend of a spec that names none: the tests' and the toys' reference, deterministic across machines. */
export const defaultSweepBackend = "cpu" as const

/** Decodes a parsed spec, every mistake named by its key. */
export const decode = (value: unknown, source: string) =>
  Schema.decodeUnknownEffect(SweepSpec)(value, { onExcessProperty: "error", errors: "all" }).pipe(
    Effect.mapError((e) => new InvalidConfig({ message: `Sweep spec ${source} is invalid:\n${e.message}` }))
  )

/** Parses text as YAML (of which JSON is a subset) and decodes it. */
export const parse = (text: string, source: string) =>
  Effect.try({
    try: () => Yaml.parse(text) as unknown,
    catch: (e) => new InvalidConfig({ message: `Sweep spec ${source} is not valid JSON or YAML: ${(e as Error).message}` })
  }).pipe(Effect.flatMap((value) => decode(value, source)))

/** Reads and decodes the spec file at `path` (.json, .yaml or .yml). */
export const load = Effect.fnUntraced(function*(path: string) {
  const fs = yield* FileSystem.FileSystem
  const text = yield* fs.readFileString(path).pipe(
    Effect.mapError(() => new InvalidConfig({ message: `Sweep spec ${path} cannot be read: check the path.` }))
  )
  return yield* parse(text, path)
})
