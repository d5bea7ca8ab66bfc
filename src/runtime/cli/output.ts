/**
 * What a person sees: a progress bar on stderr during long runs (cli-progress: maintained, handles
 * TTY and non-TTY output), and short summaries. With `--json`, stdout carries only the JSON result.
 */
import { SingleBar } from "cli-progress"
import { Console, Effect } from "effect"
import * as RunRecord from "../RunRecord.ts"
import type { StepRecord } from "../RunRecord.ts"

const format = (v: unknown): string =>
  typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toPrecision(5)) : JSON.stringify(v)

/** A progress callback for `run`, and a function that closes the bar. */
export const progressBar = (label: string) => {
  const bar = new SingleBar({
    format: `${label} [{bar}] {value}/{total} outer steps | F {F} | k̄ {kbar} | {ms} ms/step | ETA {eta_formatted}`,
    stream: process.stderr,
    noTTYOutput: true,
    notTTYSchedule: 5000,
    hideCursor: true
  })
  let started = false
  return {
    onStep: (record: StepRecord, total: number) =>
      Effect.sync(() => {
        if (!started) {
          bar.start(total, 0, { F: "", kbar: "", ms: "" })
          started = true
        }
        bar.update(record.t + 1, { F: format(record.F), kbar: record.kbar, ms: record.ms.toFixed(1) })
      }),
    stop: Effect.sync(() => started && bar.stop())
  }
}

/** Renders a flat object as aligned `key: value` lines. */
export const summaryLines = (o: Record<string, unknown>): string =>
  Object.entries(o).map(([k, v]) => `  ${k}: ${format(v)}`).join("\n")

/** Reads run directories, saying on stderr which summaries had to be rebuilt from their steps (and why). */
export const readRecords = (dirs: ReadonlyArray<string>) =>
  Effect.forEach(dirs, (dir) =>
    RunRecord.read(dir).pipe(
      Effect.tap((record) =>
        record.summary?.rebuilt === undefined
          ? Effect.void
          : Console.error(`warning: ${dir}/${RunRecord.files.summary}: ${record.summary.rebuilt}`)
      )
    ))
