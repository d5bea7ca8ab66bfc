/**
 * A run's recorded steps for other tools, at full precision: every number as JavaScript's shortest
 * decimal that reads back to the same double (what `JSON.stringify` writes), so nothing is rounded.
 * CSV has one column per step field, nested fields dotted (`cost.innerSteps`); JSON is the array of
 * step records as recorded.
 */
import type { StepRecord } from "./RunRecord.ts"

export type ExportFormat = "csv" | "json"

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v)

/** `{ a: { b: 1 } }` as `[["a.b", 1]]`; arrays stay whole (written as JSON in a CSV cell). */
const flatten = (value: Record<string, unknown>, prefix = ""): Array<readonly [string, unknown]> =>
  Object.entries(value).flatMap(([key, v]) => isObject(v) ? flatten(v, `${prefix}${key}.`) : [[`${prefix}${key}`, v] as const])

const csvCell = (v: unknown): string => {
  const text = v === undefined ? "" : typeof v === "string" ? v : JSON.stringify(v)
  return /[",\r\n]/.test(text) ? `"${text.replaceAll("\"", "\"\"")}"` : text
}

/** The steps as CSV (RFC 4180; columns in order of first appearance) or as a JSON array. */
export const exportSteps = (steps: ReadonlyArray<StepRecord>, format: ExportFormat): string => {
  if (format === "json") return JSON.stringify(steps, null, 2) + "\n"
  const rows = steps.map((step) => new Map(flatten(step)))
  const columns = [...new Set(rows.flatMap((row) => [...row.keys()]))]
  return [columns, ...rows.map((row) => columns.map((c) => row.get(c)))]
    .map((cells) => cells.map(csvCell).join(",") + "\r\n")
    .join("")
}
