/**
 * A sweep spec expanded into runs. A run's id is a hash of what determines its results — task,
 * method, backend, seed and its settings decoded with their defaults — so the same run gets the same
 * id and directory in every expansion: a rerun finds what is done, and a run added to the spec
 * leaves the others' ids alone. Labels and checkpoint intervals change no result and are not hashed.
 */
import { Effect, Schema } from "effect"
import { createHash } from "node:crypto"
import * as path from "node:path"
import { InvalidConfig } from "../../domain/errors.ts"
import { BackendChoice } from "../Backend.ts"
import { findMethod, findTask, resolveSettings } from "../settings.ts"
import { defaultCheckpointEvery } from "../run.ts"
import { defaultSweepBackend, type SweepSpec } from "./Spec.ts"

/** One run of a sweep: what a worker needs to start it, or to resume it from its directory. */
export const PlannedRun = Schema.Struct({
  id: Schema.String,
  /** Absolute run directory. */
  dir: Schema.String,
  task: Schema.String,
  method: Schema.String,
  label: Schema.String,
  seed: Schema.Number,
  backend: BackendChoice,
  /** Raw settings (spec, method entry and grid point merged); decoded again by the run. */
  settings: Schema.Record(Schema.String, Schema.Unknown),
  /** The grid point of this run (the settings the sweep varies). */
  point: Schema.Record(Schema.String, Schema.Unknown),
  checkpointEvery: Schema.Number,
  /** The sweep's journal (`sweep.ndjson` beside the run directories): one line per start and end of a run. */
  journal: Schema.String
})
export type PlannedRun = typeof PlannedRun.Type

/** The journal of a sweep, in its output directory. */
export const journalFile = "sweep.ndjson"

/** What a sweep ran, in its output directory: the spec and its planned runs. */
export const manifestFile = "sweep.json"

/** JSON with object keys sorted, so equal values hash equally whatever order they were written in. */
const canonical = (value: unknown): string =>
  Array.isArray(value)
    ? `[${value.map(canonical).join(",")}]`
    : typeof value === "object" && value !== null
    ? `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`).join(",")}}`
    : JSON.stringify(value)

/** The id of a run: 12 hex digits of the SHA-256 of its resolved configuration and seed. */
export const runId = (resolved: {
  readonly task: string
  readonly method: string
  readonly backend: string
  readonly seed: number
  readonly config: Record<string, unknown>
}): string => createHash("sha256").update(canonical(resolved)).digest("hex").slice(0, 12)

/** Every combination of the grid's values, keys in sorted order (one empty point for no grid). */
export const gridPoints = (grid: Record<string, ReadonlyArray<unknown>>): ReadonlyArray<Record<string, unknown>> =>
  Object.keys(grid).sort().reduce<ReadonlyArray<Record<string, unknown>>>(
    (points, key) => points.flatMap((point) => grid[key]!.map((value) => ({ ...point, [key]: value }))),
    [{}]
  )

const pointName = (point: Record<string, unknown>) =>
  Object.entries(point).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(",")

/**
 * The runs of `spec`, with their directories under `out`: methods in the spec's order, then grid
 * points, then seeds. A setting no method or task takes fails here, before anything runs.
 */
export const plan = Effect.fnUntraced(function*(spec: SweepSpec, out: string) {
  const task = yield* findTask(spec.task)
  const backend = spec.backend ?? defaultSweepBackend
  const runs: Array<PlannedRun> = []
  for (const entry of spec.methods) {
    const { method: name, label, settings: own } = typeof entry === "string" ? { method: entry, label: undefined, settings: undefined } : entry
    const method = yield* findMethod(name)
    for (const point of gridPoints(spec.grid ?? {})) {
      const settings = { ...spec.settings, ...own, ...point }
      const resolved = yield* resolveSettings(task, method, settings).pipe(
        Effect.mapError((e) =>
          new InvalidConfig({
            message: `Sweep spec, method ${method.name}${Object.keys(point).length > 0 ? ` at grid point ${pointName(point)}` : ""}: ${e.message}`
          })
        )
      )
      const config = { ...resolved.task, ...resolved.method }
      for (const seed of spec.seeds) {
        const id = runId({ task: task.name, method: method.name, backend, seed, config })
        const duplicate = runs.find((r) => r.id === id)
        if (duplicate !== undefined) {
          return yield* new InvalidConfig({
            message: `Sweep spec: ${method.name} (seed ${seed}${Object.keys(point).length > 0 ? `, ${pointName(point)}` : ""}) ` +
              `is the same run as ${duplicate.label} (seed ${duplicate.seed}): remove the repeated method entry or seed.`
          })
        }
        const legend = label ?? method.name
        runs.push({
          id,
          dir: path.resolve(out, `${legend.replace(/[^\w.-]+/g, "_")}-seed${seed}-${id}`),
          task: task.name,
          method: method.name,
          label: legend,
          seed,
          backend,
          settings,
          point,
          checkpointEvery: spec.checkpointEvery ?? defaultCheckpointEvery,
          journal: path.resolve(out, journalFile)
        })
      }
    }
  }
  return runs as ReadonlyArray<PlannedRun>
})
