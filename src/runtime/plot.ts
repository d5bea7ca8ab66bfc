/**
 * Plots of run records: one panel per metric, one line per run, outer step on the x axis; as SVG or PNG.
 *
 * The figure is a Vega-Lite spec, compiled by `vega-lite` and rendered headlessly by `vega` to SVG; PNG is that SVG
 * rasterized by resvg. All data is inline and the view's loader refuses every URI, so rendering never touches the
 * network or the disk.
 */
import { Effect, FileSystem, Schema } from "effect"
import type * as vega from "vega"
import type * as vl from "vega-lite"
import type { RunRecord, StepRecord } from "./RunRecord.ts"

export interface PlotOptions {
  /** Step fields to plot, one panel each: `F`, `kbar`, a task metric such as `xError`, or `cost.<field>`. */
  readonly metrics: ReadonlyArray<string>
  readonly title?: string
  /** Log-scale y axes; values ≤ 0 cannot be shown on them and are skipped. */
  readonly logY?: boolean
}

/** A plot could not be made or written; the message says what to do. */
export class PlotError extends Schema.TaggedError<PlotError>()("PlotError", {
  problem: Schema.String,
  hint: Schema.String
}) {
  override get message() {
    return `Cannot plot: ${this.problem}. ${this.hint}`
  }
}

/** Renders `runs` as an SVG document. */
export const plotRuns = Effect.fnUntraced(function*(
  runs: ReadonlyArray<RunRecord>,
  options: PlotOptions
): Effect.fn.Return<string, PlotError> {
  if (runs.length === 0) {
    return yield* new PlotError({ problem: "no runs were given", hint: "Pass at least one run directory." })
  }
  const recorded = recordedMetrics(runs)
  if (recorded.length === 0) {
    return yield* new PlotError({
      problem: "none of these runs recorded an outer step",
      hint: "Plot runs that got through at least one outer step."
    })
  }
  if (options.metrics.length === 0) {
    return yield* new PlotError({ problem: "no metric was named", hint: `Name one or more of: ${recorded.join(", ")}.` })
  }
  for (const metric of options.metrics) {
    if (!recorded.includes(metric)) {
      return yield* new PlotError({
        problem: `metric "${metric}" is not recorded in any of these runs`,
        hint: `Recorded metrics: ${recorded.join(", ")}.`
      })
    }
  }
  const names = legendNames(runs)
  const points = runs.flatMap((run, i) =>
    run.steps.flatMap((step) =>
      options.metrics.flatMap((metric) => {
        const value = metricValue(step, metric)
        // Absent values are skipped, so a metric logged every 10 steps draws through its own points only.
        return value === undefined || (options.logY === true && value <= 0)
          ? []
          : [{ run: names[i]!, t: step.t, metric, value }]
      })
    )
  )
  for (const metric of options.metrics) {
    if (options.logY === true && !points.some((p) => p.metric === metric)) {
      return yield* new PlotError({
        problem: `metric "${metric}" has no positive value to show on a log scale`,
        hint: "Plot it without the log-scale option."
      })
    }
  }
  return yield* renderSvg(spec(points, names, options))
})

/** Rasterizes an SVG document to PNG at twice its size, so text stays sharp. */
export const svgToPng = (svg: string): Effect.Effect<Uint8Array, PlotError> =>
  Effect.tryPromise({
    // Loaded on first use: the renderers cost every other command their start-up time.
    try: async () => {
      const { Resvg } = await import("@resvg/resvg-js")
      return new Resvg(svg, { fitTo: { mode: "zoom", value: 2 }, font: { loadSystemFonts: true } }).render().asPng()
    },
    catch: (e) =>
      new PlotError({
        problem: `the SVG could not be rasterized (${e})`,
        hint: "Write the plot as .svg instead."
      })
  })

/** Renders `runs` and writes the plot to `outFile`, as SVG or PNG according to its extension. */
export const writePlot = Effect.fnUntraced(function*(
  runs: ReadonlyArray<RunRecord>,
  options: PlotOptions,
  outFile: string
): Effect.fn.Return<void, PlotError, FileSystem.FileSystem> {
  const format = formats.find((f) => outFile.toLowerCase().endsWith(f))
  if (format === undefined) {
    return yield* new PlotError({
      problem: `"${outFile}" has an extension plots cannot be written as`,
      hint: `Name the output file with one of: ${formats.join(", ")}.`
    })
  }
  const fs = yield* FileSystem.FileSystem
  const svg = yield* plotRuns(runs, options)
  const written = format === ".svg"
    ? fs.writeFileString(outFile, svg)
    : svgToPng(svg).pipe(Effect.flatMap((png) => fs.writeFile(outFile, png)))
  yield* written.pipe(
    Effect.catchTag("PlatformError", (e) =>
      Effect.fail(
        new PlotError({ problem: `${outFile} cannot be written (${e.message})`, hint: "Choose a writable path." })
      ))
  )
})

const formats = [".svg", ".png"] as const

/** What `metric` names in a step: a numeric step field, or a cost field as `cost.<field>`. */
const metricValue = (step: StepRecord, metric: string): number | undefined => {
  const value = metric.startsWith("cost.")
    ? (step.cost as Record<string, unknown>)[metric.slice("cost.".length)]
    : step[metric]
  return typeof value === "number" && Number.isFinite(value) ? value : undefined
}

const recordedMetrics = (runs: ReadonlyArray<RunRecord>): ReadonlyArray<string> => {
  const names = new Set<string>()
  for (const step of runs.flatMap((run) => run.steps)) {
    const fields = [...Object.keys(step), ...Object.keys(step.cost).map((key) => `cost.${key}`)]
    for (const name of fields) if (name !== "t" && metricValue(step, name) !== undefined) names.add(name)
  }
  return [...names]
}

/** Run labels, made distinct (by seed, then by position) so two runs never share a line. */
const legendNames = (runs: ReadonlyArray<RunRecord>): ReadonlyArray<string> => {
  const count = (names: ReadonlyArray<string>, name: string) => names.filter((n) => n === name).length
  const labels = runs.map((run) => run.info.label)
  const seeded = runs.map(({ info }) => count(labels, info.label) > 1 ? `${info.label} (seed ${info.seed})` : info.label)
  return seeded.map((name, i) => count(seeded, name) > 1 ? `${name} #${i + 1}` : name)
}

interface Point {
  readonly run: string
  readonly t: number
  readonly metric: string
  readonly value: number
}

const spec = (points: ReadonlyArray<Point>, names: ReadonlyArray<string>, options: PlotOptions): vl.TopLevelSpec => ({
  ...(options.title === undefined ? {} : { title: options.title }),
  data: { values: [...points] },
  // resvg maps the generic sans-serif to Arial alone; naming common families keeps PNG text sans where Arial is missing.
  config: { font: "Helvetica, Arial, DejaVu Sans, Liberation Sans, sans-serif" },
  // One x range for every panel, so a step lines up down the page.
  resolve: { scale: { x: "shared" } },
  vconcat: options.metrics.map((metric) => ({
    width: 480,
    height: 240,
    transform: [{ filter: { field: "metric", equal: metric } }],
    mark: { type: "line" },
    encoding: {
      x: { field: "t", type: "quantitative", title: "outer step" },
      y: {
        field: "value",
        type: "quantitative",
        title: metric,
        scale: options.logY === true ? { type: "log" } : { zero: false }
      },
      // Legend in the order the runs were given, not alphabetical.
      color: { field: "run", type: "nominal", title: "run", scale: { domain: [...names] } }
    }
  }))
})

const refuse = (uri: string) => Promise.reject(new Error(`plots load nothing, but "${uri}" was requested`))
const offline: vega.Loader = { load: refuse, sanitize: refuse, http: refuse, file: refuse }

const renderSvg = (figure: vl.TopLevelSpec) =>
  Effect.acquireUseRelease(
    Effect.tryPromise(async () => {
      const [vega, vl] = await Promise.all([import("vega"), import("vega-lite")])
      return new vega.View(vega.parse(vl.compile(figure).spec), { renderer: "none", loader: offline })
    }),
    (view) => Effect.tryPromise(() => view.toSVG()),
    (view) => Effect.sync(() => view.finalize())
  ).pipe(
    Effect.mapError((e) =>
      new PlotError({
        problem: `Vega could not render the figure (${e.cause})`,
        hint: "This is a bug in the plot spec; please report it with the run directories."
      })
    )
  )
