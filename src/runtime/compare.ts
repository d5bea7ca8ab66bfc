/**
 * A comparison table of run records: one row per run with what was run, how it ended, its final metrics and its
 * mean cost per outer step; as a Markdown table, RFC 4180 CSV, or JSON.
 */
import type { RunRecord, StepRecord } from "./RunRecord.ts"

export type CompareFormat = "markdown" | "csv" | "json"

export interface CompareOptions {
  readonly format: CompareFormat
  /** Final metrics to show; all that any run recorded when omitted. */
  readonly metrics?: ReadonlyArray<string>
}

/**
 * Markdown and CSV show measured values to 4 significant digits and peak memory in MiB; JSON holds the raw values,
 * one object per run keyed by the column names, with `null` for a missing value.
 */
export const compareRuns = (runs: ReadonlyArray<RunRecord>, options: CompareOptions): string => {
  const finals = options.metrics ?? [...new Set(runs.flatMap((run) => Object.keys(run.summary?.final ?? {})))]
  const columns = [...identity, ...finals.map(finalColumn), ...means]
  const rows = runs.map((run) => columns.map((column) => column.value(run)))
  switch (options.format) {
    case "json":
      return JSON.stringify(
        rows.map((row) => Object.fromEntries(row.map((value, i) => [columns[i]!.name, value ?? null]))),
        null,
        2
      )
    case "csv":
      return [columns.map((c) => c.name), ...rows.map((row) => row.map((value, i) => show(columns[i]!, value)))]
        .map((cells) => cells.map(csvField).join(",") + "\r\n")
        .join("")
    case "markdown":
      return markdown(columns, rows.map((row) => row.map((value, i) => show(columns[i]!, value))))
  }
}

/** `count`s are shown exactly, `measure`s rounded; both are right-aligned in Markdown. */
interface Column {
  readonly name: string
  readonly kind: "text" | "count" | "measure"
  readonly value: (run: RunRecord) => unknown
}

const identity: ReadonlyArray<Column> = [
  { name: "label", kind: "text", value: (run) => run.info.label },
  { name: "method", kind: "text", value: (run) => run.info.method },
  { name: "task", kind: "text", value: (run) => run.info.task },
  { name: "seed", kind: "count", value: (run) => run.info.seed },
  // A run without summary.json was killed or is still going.
  { name: "status", kind: "text", value: (run) => run.summary?.status ?? "unfinished" },
  { name: "outerSteps", kind: "count", value: (run) => run.summary?.outerSteps ?? run.steps.length }
]

const finalColumn = (metric: string): Column => ({
  name: metric,
  kind: "measure",
  value: (run) => run.summary?.final[metric]
})

const mean = (name: string, of: (step: StepRecord) => number): Column => ({
  name,
  kind: "measure",
  value: (run) => run.steps.length === 0 ? undefined : run.steps.reduce((sum, s) => sum + of(s), 0) / run.steps.length
})

const means: ReadonlyArray<Column> = [
  mean("mean ms", (s) => s.ms),
  mean("mean innerSteps", (s) => s.cost.innerSteps),
  mean("mean reverseSteps", (s) => s.cost.reverseSteps),
  mean("mean hvps", (s) => s.cost.hvps),
  mean("mean peak MiB", (s) => s.cost.peakBytes / 2 ** 20),
  mean("mean kbar", (s) => s.kbar)
]

const show = (column: Column, value: unknown): string => {
  if (value === undefined || value === null) return ""
  if (typeof value === "number") {
    return column.kind === "measure" && Number.isFinite(value) ? String(Number(value.toPrecision(4))) : String(value)
  }
  return typeof value === "string" ? value : JSON.stringify(value)
}

const csvField = (cell: string) => /[",\r\n]/.test(cell) ? `"${cell.replaceAll("\"", "\"\"")}"` : cell

const markdown = (columns: ReadonlyArray<Column>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const escape = (cell: string) => cell.replaceAll("|", "\\|").replace(/\r?\n/g, " ")
  const header = columns.map((c) => escape(c.name))
  const body = rows.map((row) => row.map(escape))
  // A delimiter cell needs at least three characters, the colon included.
  const widths = header.map((h, i) => Math.max(3, h.length, ...body.map((row) => row[i]!.length)))
  const right = (i: number) => columns[i]!.kind !== "text"
  const line = (cells: ReadonlyArray<string>) =>
    `| ${cells.map((cell, i) => right(i) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)).join(" | ")} |`
  const delimiter = `| ${widths.map((w, i) => right(i) ? "-".repeat(w - 1) + ":" : "-".repeat(w)).join(" | ")} |`
  return [line(header), delimiter, ...body.map(line)].join("\n") + "\n"
}
