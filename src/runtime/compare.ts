/**
 * A comparison table of run records: one row per run with what was run, how it ended, its final metrics and its
 * mean cost per outer step; or one row per configuration (see `aggregate.ts`) with a column per setting that differs
 * between the configurations and each measure as mean ± std over its runs; as a Markdown table, RFC 4180 CSV, or JSON.
 */
import { type Configuration, groupByConfiguration, type Statistic, statistic, variedSettings } from "./aggregate.ts"
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
export const compareRuns = (runs: ReadonlyArray<RunRecord>, options: CompareOptions): string =>
  render([...identity, ...measures(runs, options)], runs, options.format)

/**
 * One row per configuration: task, method, the settings that differ between the configurations, the number of runs
 * and their seeds and statuses, then every measure of {@link compareRuns} over the runs as mean ± sample std.
 * Markdown shows `mean ± std` (and the count where fewer runs than the configuration's have the value); CSV and JSON
 * have `<measure> mean`, `<measure> std` and `<measure> n` columns.
 */
export const compareConfigurations = (runs: ReadonlyArray<RunRecord>, options: CompareOptions): string => {
  const configurations = groupByConfiguration(runs)
  const settings = variedSettings(configurations).map((key): Column<Configuration> => ({
    name: key,
    kind: "text",
    value: (c) => c.settings[key]
  }))
  const overRuns = (column: Column<RunRecord>): Column<Configuration> => ({
    name: column.name,
    kind: "statistic",
    value: (c) => {
      const s = statistic(c.runs.map(column.value))
      return s === undefined ? undefined : { ...s, of: c.runs.length }
    }
  })
  return render([...configurationIdentity, ...settings, ...measures(runs, options).map(overRuns)], configurations, options.format)
}

const measures = (runs: ReadonlyArray<RunRecord>, options: CompareOptions): ReadonlyArray<Column<RunRecord>> => {
  const finals = options.metrics ?? [...new Set(runs.flatMap((run) => Object.keys(run.summary?.final ?? {})))]
  return [...finals.map(finalColumn), ...means]
}

const render = <A>(columns: ReadonlyArray<Column<A>>, items: ReadonlyArray<A>, format: CompareFormat): string => {
  const shown = format === "markdown" ? columns : columns.flatMap(splitStatistic)
  const rows = items.map((item) => shown.map((column) => column.value(item)))
  switch (format) {
    case "json":
      return JSON.stringify(
        rows.map((row) => Object.fromEntries(row.map((value, i) => [shown[i]!.name, value ?? null]))),
        null,
        2
      )
    case "csv":
      return [shown.map((c) => c.name), ...rows.map((row) => row.map((value, i) => show(shown[i]!, value)))]
        .map((cells) => cells.map(csvField).join(",") + "\r\n")
        .join("")
    case "markdown":
      return markdown(shown, rows.map((row) => row.map((value, i) => show(shown[i]!, value))))
  }
}

/** A statistic as its mean, std and n columns, for the formats read by programs. */
const splitStatistic = <A>(column: Column<A>): ReadonlyArray<Column<A>> => {
  if (column.kind !== "statistic") return [column]
  const part = (key: keyof Statistic, kind: Column<A>["kind"]): Column<A> => ({
    name: `${column.name} ${key}`,
    kind,
    value: (item) => (column.value(item) as Statistic | undefined)?.[key]
  })
  return [part("mean", "measure"), part("std", "measure"), part("n", "count")]
}

/**
 * `count`s are shown exactly, `measure`s rounded, a `statistic` (a {@link Statistic} of the runs of a configuration) as
 * rounded mean ± std; all three are right-aligned in Markdown.
 */
interface Column<A> {
  readonly name: string
  readonly kind: "text" | "count" | "measure" | "statistic"
  readonly value: (item: A) => unknown
}

const identity: ReadonlyArray<Column<RunRecord>> = [
  { name: "label", kind: "text", value: (run) => run.info.label },
  { name: "method", kind: "text", value: (run) => run.info.method },
  { name: "task", kind: "text", value: (run) => run.info.task },
  { name: "seed", kind: "count", value: (run) => run.info.seed },
  // A run without summary.json was killed or is still going.
  { name: "status", kind: "text", value: (run) => run.summary?.status ?? "unfinished" },
  { name: "outerSteps", kind: "count", value: (run) => run.summary?.outerSteps ?? run.steps.length }
]

const configurationIdentity: ReadonlyArray<Column<Configuration>> = [
  { name: "task", kind: "text", value: (c) => c.task },
  { name: "method", kind: "text", value: (c) => c.method },
  { name: "n", kind: "count", value: (c) => c.runs.length },
  { name: "seeds", kind: "text", value: (c) => c.runs.map((run) => run.info.seed).join(" ") },
  {
    name: "status",
    kind: "text",
    value: (c) => {
      const statuses = c.runs.map((run) => run.summary?.status ?? "unfinished")
      return [...new Set(statuses)].map((s) => `${statuses.filter((x) => x === s).length} ${s}`).join(", ")
    }
  }
]

const finalColumn = (metric: string): Column<RunRecord> => ({
  name: metric,
  kind: "measure",
  value: (run) => run.summary?.final[metric]
})

const mean = (name: string, of: (step: StepRecord) => number): Column<RunRecord> => ({
  name,
  kind: "measure",
  value: (run) => run.steps.length === 0 ? undefined : run.steps.reduce((sum, s) => sum + of(s), 0) / run.steps.length
})

const means: ReadonlyArray<Column<RunRecord>> = [
  mean("mean ms", (s) => s.ms),
  mean("mean innerSteps", (s) => s.cost.innerSteps),
  mean("mean reverseSteps", (s) => s.cost.reverseSteps),
  mean("mean hvps", (s) => s.cost.hvps),
  mean("mean peak MiB", (s) => s.cost.peakBytes / 2 ** 20),
  mean("mean kbar", (s) => s.kbar)
]

const show = (column: Column<never>, value: unknown): string => {
  if (value === undefined || value === null) return ""
  if (column.kind === "statistic") {
    const { mean, n, of, std } = value as Statistic & { readonly of: number }
    return `${rounded(mean)}${std === undefined ? "" : ` ± ${rounded(std)}`}${n < of ? ` (n = ${n})` : ""}`
  }
  if (typeof value === "number") {
    return column.kind === "measure" && Number.isFinite(value) ? rounded(value) : String(value)
  }
  return typeof value === "string" ? value : JSON.stringify(value)
}

const rounded = (value: number) => String(Number(value.toPrecision(4)))

const csvField = (cell: string) => /[",\r\n]/.test(cell) ? `"${cell.replaceAll("\"", "\"\"")}"` : cell

const markdown = (columns: ReadonlyArray<Column<never>>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
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
