/**
 * Runs grouped by configuration, and statistics over the seeds of one configuration.
 *
 * A configuration is a task, a method and the resolved settings a run recorded (run.json's `config`): two runs
 * belong to the same one exactly when these are equal, whatever their seed, label or backend. `compare`, `plot` and
 * sweeps report a configuration as the mean, the sample standard deviation and the number of its runs.
 */
import type { RunRecord, StepRecord } from "./RunRecord.ts"

export interface Configuration {
  /** Equal for two configurations exactly when their task, method and settings are equal. */
  readonly key: string
  readonly task: string
  readonly method: string
  readonly settings: Readonly<Record<string, unknown>>
  /** Its runs in the order they were given (normally one per seed). */
  readonly runs: ReadonlyArray<RunRecord>
}

/** Mean, sample standard deviation (n − 1 in the denominator; undefined for one value) and count. */
export interface Statistic {
  readonly mean: number
  readonly std: number | undefined
  readonly n: number
}

/** `runs` grouped by configuration, in the order each configuration first appears. */
export const groupByConfiguration = (runs: ReadonlyArray<RunRecord>): ReadonlyArray<Configuration> => {
  const groups = new Map<string, Array<RunRecord>>()
  for (const run of runs) {
    const key = canonical({ task: run.info.task, method: run.info.method, settings: run.info.config })
    groups.set(key, [...(groups.get(key) ?? []), run])
  }
  return [...groups].map(([key, members]) => {
    const { config, method, task } = members[0]!.info
    return { key, task, method, settings: config, runs: members }
  })
}

/** Whether some configuration among `runs` has more than one run, so that statistics over seeds mean something. */
export const hasRepeats = (runs: ReadonlyArray<RunRecord>): boolean =>
  groupByConfiguration(runs).some((configuration) => configuration.runs.length > 1)

/**
 * The settings that take more than one value among the configurations that have them. One that only some methods
 * have (LS's CG iterations) is not counted as differing for being absent from the others: the method says that.
 */
export const variedSettings = (configurations: ReadonlyArray<Configuration>): ReadonlyArray<string> => {
  const keys = [...new Set(configurations.flatMap((c) => Object.keys(c.settings)))]
  return keys.filter((key) =>
    new Set(configurations.flatMap((c) => key in c.settings ? [canonical(c.settings[key])] : [])).size > 1
  )
}

/** The statistic of the finite numbers among `values`; undefined when there are none. */
export const statistic = (values: ReadonlyArray<unknown>): Statistic | undefined => {
  const xs = values.filter((v): v is number => typeof v === "number" && Number.isFinite(v))
  const n = xs.length
  if (n === 0) return undefined
  const mean = xs.reduce((a, b) => a + b, 0) / n
  const std = n === 1 ? undefined : Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1))
  return { mean, std, n }
}

/** The statistic of a final metric (summary.json's `final`) over runs (a configuration's, normally). */
export const finalStatistic = (runs: ReadonlyArray<RunRecord>, metric: string): Statistic | undefined =>
  statistic(runs.map((run) => run.summary?.final[metric]))

/**
 * Per outer step t, the statistic of `of(step)` over the runs (a configuration's, normally) that recorded a number at t (so a metric logged every
 * 10 steps has a point every 10 steps, and a run that stopped early leaves n smaller from there on).
 */
export const stepStatistics = (
  runs: ReadonlyArray<RunRecord>,
  of: (step: StepRecord) => unknown
): ReadonlyArray<Statistic & { readonly t: number }> => {
  const byStep = new Map<number, Array<unknown>>()
  for (const step of runs.flatMap((run) => run.steps)) {
    byStep.set(step.t, [...(byStep.get(step.t) ?? []), of(step)])
  }
  return [...byStep].sort(([a], [b]) => a - b).flatMap(([t, values]) => {
    const s = statistic(values)
    return s === undefined ? [] : [{ t, ...s }]
  })
}

/** JSON with object keys sorted, so equal values give equal strings whatever order their keys were written in. */
const canonical = (value: unknown): string =>
  JSON.stringify(value, (_, v: unknown) =>
    typeof v === "object" && v !== null && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0))
      : v) ?? "undefined"
