/**
 * Reading a sweep's output directory in tests: its planned runs (sweep.json), what each recorded,
 * and its journal.
 */
import { existsSync, readFileSync } from "node:fs"
import * as path from "node:path"
import type { PlannedRun } from "../../src/runtime/sweep/plan.ts"
import type { Entry } from "../../src/runtime/sweep/journal.ts"

export const plannedRuns = (out: string): ReadonlyArray<PlannedRun> =>
  JSON.parse(readFileSync(path.join(out, "sweep.json"), "utf8")).runs

/** The journal's lines (none before the first run starts). */
export const journal = (out: string): ReadonlyArray<Entry> => {
  const file = path.join(out, "sweep.ndjson")
  return existsSync(file) ? readFileSync(file, "utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l)) : []
}

/** Lines recorded in a run's steps.ndjson so far. */
export const stepsRecorded = (dir: string): number => {
  const file = path.join(dir, "steps.ndjson")
  return existsSync(file) ? readFileSync(file, "utf8").split("\n").filter((l) => l.endsWith("}")).length : 0
}

/**
 * Every run's results by id: its step records but for their wall time (`ms`), its status and final
 * metrics. Two sweeps of one spec agree on these bit for bit (cpu backend), however they were run.
 */
export const results = (out: string): Record<string, unknown> =>
  Object.fromEntries(plannedRuns(out).map((run) => {
    const steps = readFileSync(path.join(run.dir, "steps.ndjson"), "utf8").split("\n").filter((l) => l !== "")
      .map((l) => {
        const { ms: _, ...step } = JSON.parse(l)
        return step
      })
    const summary = JSON.parse(readFileSync(path.join(run.dir, "summary.json"), "utf8"))
    return [run.id, { steps, status: summary.status, final: summary.final }]
  }))

/** Whether process `pid` is alive (a zombie, dead but not reaped, is not). */
export const alive = (pid: number): boolean => {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"))
  } catch {
    return false
  }
}
