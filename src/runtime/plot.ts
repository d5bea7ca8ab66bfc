/**
 * Plots of run records: one panel per metric, one line per run or one mean line with a ± std band per configuration,
 * x by outer step, wall time or cumulative cost; as SVG or PNG.
 *
 * Made to be read in print: a series differs from the others in dash pattern and marker shape as well as colour, and
 * is named by what differs between the series; a panel says in a note which series it draws over one another and
 * how many values its log axis could not show.
 *
 * The figure is a Vega-Lite spec, compiled by `vega-lite` and rendered headlessly by `vega` to SVG; PNG is that SVG
 * rasterized by resvg. All data is inline and the view's loader refuses every URI, so rendering never touches the
 * network or the disk.
 */
import { Effect, FileSystem, Schema } from "effect"
import type * as vega from "vega"
import type * as vl from "vega-lite"
import { groupByConfiguration, hasRepeats, stepStatistics } from "./aggregate.ts"
import type { RunInfo, RunRecord, StepRecord } from "./RunRecord.ts"

/** A y-axis scale. A log axis cannot show values ≤ 0 (the panel says how many it dropped); symlog shows every value. */
export const scales = ["linear", "log", "symlog"] as const
export type Scale = typeof scales[number]

/** What the x axis counts: the outer step, or wall time or a cost accumulated over the outer steps so far. */
export type XAxis = "step" | "time" | "innerSteps" | "reverseSteps" | "hvps"

/**
 * Series: one per run; one per configuration (task, method and settings: see `aggregate.ts`) with its mean over the
 * seeds as a line and ± one standard deviation as a band; or, by default, per configuration exactly when some
 * configuration has more than one run.
 */
export type Grouping = "auto" | "configuration" | "run"

/** One panel's own options. */
export interface Panel {
  readonly scale?: Scale
  /** The y-axis title; default a readable name of the metric. */
  readonly title?: string
}

export interface PlotOptions {
  /** Step fields to plot, one panel each: `F`, `kbar`, a task metric such as `xError`, or `cost.<field>`. */
  readonly metrics: ReadonlyArray<string>
  readonly title?: string
  /** The y scale of every panel that `panels` gives none; default linear. */
  readonly scale?: Scale
  /** Options of single panels, by metric. */
  readonly panels?: Readonly<Record<string, Panel>>
  /** Default `step`. */
  readonly x?: XAxis
  /** Default `auto`. */
  readonly group?: Grouping
  /**
   * Legend names: `varied` (default) names each series by what differs between the series (task, method, the
   * settings that differ, seed, backend); `label` uses the runs' labels (`bilevel run --label`).
   */
  readonly legend?: "varied" | "label"
  /**
   * The colour group of a series, by its legend name: series of one group share a colour (a method and its
   * warm-started twin, say) and are told apart by dash and marker. Default: every series its own colour.
   */
  readonly colourGroup?: (series: string) => string
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
  const series = seriesOf(runs, options)
  const panels = yield* Effect.forEach(options.metrics, (metric) => panel(series, metric, options))
  return yield* renderSvg(spec(panels, series.map((s) => s.name), options))
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

/** A line of the plot: one run, or the runs of one configuration drawn as their mean and a band of ± one std. */
interface Series {
  readonly name: string
  readonly runs: ReadonlyArray<RunRecord>
  readonly band: boolean
}

const seriesOf = (runs: ReadonlyArray<RunRecord>, options: PlotOptions): ReadonlyArray<Series> => {
  const group = options.group ?? "auto"
  if (group === "run" || (group === "auto" && !hasRepeats(runs))) {
    const names = namesFrom(
      runs.map((run) => options.legend === "label" ? [] : [...configurationFacets(run.info), ...runFacets(run.info)]),
      runs.map((run) => run.info.label)
    )
    return runs.map((run, i) => ({ name: names[i]!, runs: [run], band: false }))
  }
  const configurations = groupByConfiguration(runs)
  const labels = configurations.map((c) => [...new Set(c.runs.map((run) => run.info.label))].join(" / "))
  const names = namesFrom(
    configurations.map((c) => options.legend === "label" ? [] : configurationFacets({ ...c, config: c.settings })),
    labels
  )
  return configurations.map((c, i) => ({ name: `${names[i]} (n = ${c.runs.length})`, runs: c.runs, band: true }))
}

/** What can tell series apart, as (what, how it is shown) pairs in the order names list them. */
type Facets = ReadonlyArray<readonly [string, string]>

const configurationFacets = (info: Pick<RunInfo, "task" | "method" | "config">): Facets => [
  ["task", info.task],
  ["method", info.method],
  ...Object.entries(info.config).map(([key, value]) =>
    [`setting ${key}`, `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`] as const
  )
]

const runFacets = (info: RunInfo): Facets => [["seed", `seed ${info.seed}`], ["backend", info.backend]]

/**
 * Each item named by the facets whose shown values are not the same for every item; `fallback` (labels) where that
 * leaves nothing, and a position where two names would still be equal.
 */
const namesFrom = (items: ReadonlyArray<Facets>, fallback: ReadonlyArray<string>): ReadonlyArray<string> => {
  const fields = [...new Set(items.flatMap((facets) => facets.map(([field]) => field)))]
  const shown = (facets: Facets, field: string) => facets.find(([f]) => f === field)?.[1]
  // A facet only some items have (a setting of one method) differs only if those items differ in it.
  const varied = fields.filter((field) => new Set(items.flatMap((facets) => shown(facets, field) ?? [])).size > 1)
  const names = items.map((facets, i) =>
    varied.flatMap((field) => shown(facets, field) ?? []).join(", ") || fallback[i]!
  )
  return names.map((name, i) => names.filter((n) => n === name).length > 1 ? `${name} #${i + 1}` : name)
}

interface Row {
  readonly metric: string
  readonly series: string
  readonly x: number
  readonly value: number
  readonly lower?: number
  readonly upper?: number
  /** Whether a marker is drawn at this point. */
  readonly marker: boolean
}

interface PanelData {
  readonly metric: string
  readonly title: string
  readonly scale: Scale
  readonly band: boolean
  readonly rows: ReadonlyArray<Row>
  /** What a reader must be told to read the panel right: values a log axis dropped, series drawn over one another. */
  readonly notes: ReadonlyArray<string>
}

/** A series with at most this many points in a panel has a marker on each; a longer one has {@link markersPerSeries}. */
const allMarkersUpTo = 50
const markersPerSeries = 12

const panel = (
  series: ReadonlyArray<Series>,
  metric: string,
  options: PlotOptions
): Effect.Effect<PanelData, PlotError> => {
  const scale = options.panels?.[metric]?.scale ?? options.scale ?? "linear"
  const x = xPositions(series.flatMap((s) => s.runs), options.x ?? "step")
  const lines = series.map((s, i) => {
    const points = stepStatistics(s.runs, (step) => metricValue(step, metric))
    const xs = stepStatistics(s.runs, (step) => metricValue(step, metric) === undefined ? undefined : x.get(step))
    const shown = points.flatMap((p, j) => scale === "log" && p.mean <= 0 ? [] : [{ p, x: xs[j]!.mean }])
    // On a log axis a band reaching ≤ 0 cannot be drawn; the mean still is.
    const banded = ({ p }: typeof shown[number]) => s.band && p.std !== undefined && (scale !== "log" || p.mean - p.std > 0)
    const markers = markerIndices(shown.length, i, series.length)
    const rows = shown.map((point, j): Row => ({
      metric,
      series: s.name,
      x: point.x,
      value: point.p.mean,
      ...(banded(point) ? { lower: point.p.mean - point.p.std!, upper: point.p.mean + point.p.std! } : {}),
      marker: markers.has(j)
    }))
    const unbanded = s.band ? shown.filter((point) => point.p.std !== undefined && !banded(point)).length : 0
    return { name: s.name, rows, recorded: points.length, dropped: points.length - shown.length, unbanded }
  })
  const rows = lines.flatMap((line) => line.rows)
  if (rows.length === 0) {
    return Effect.fail(
      new PlotError({
        problem: `metric "${metric}" has no positive value to show on a log scale`,
        hint: "Plot it on a linear or symlog scale."
      })
    )
  }
  const sum = (of: (line: typeof lines[number]) => number) => lines.reduce((total, line) => total + of(line), 0)
  const [recorded, dropped, unbanded] = [sum((l) => l.recorded), sum((l) => l.dropped), sum((l) => l.unbanded)]
  const empty = lines.filter((line) => line.recorded === 0).map((line) => line.name)
  const notes = [
    // Names are joined by semicolons: a name may hold commas (`rhg, innerSteps=5`).
    ...(empty.length === 0 ? [] : [`nothing recorded: ${empty.join("; ")}`]),
    ...(dropped === 0 ? [] : [
      `log scale: ${dropped} of ${recorded} values ≤ 0 not shown (${
        lines.filter((l) => l.dropped > 0).map((l) => `${l.name}: ${l.dropped}`).join("; ")
      })`
    ]),
    ...(unbanded === 0 ? [] : [`log scale: no band at ${unbanded} points where mean − std ≤ 0`]),
    ...coinciding(lines.map((line) => [line.name, line.rows] as const), scale).map((names) =>
      `${names.join(" = ")}: drawn over one another (within ${coincidence * 100}% of the axis range)`
    )
  ]
  return Effect.succeed({
    metric,
    title: options.panels?.[metric]?.title ?? readableName(metric),
    scale,
    band: series.some((s) => s.band),
    rows,
    notes
  })
}

/**
 * Where markers go on series `i` of `n` with `length` points: on every point of a short series; on a long one at
 * evenly spaced points, shifted by series so that lines drawn over one another still show each one's markers.
 */
const markerIndices = (length: number, i: number, n: number): ReadonlySet<number> =>
  new Set(
    length <= allMarkersUpTo
      ? Array.from({ length }, (_, j) => j)
      : Array.from({ length: markersPerSeries }, (_, j) => Math.floor((j + (i + 0.5) / n) * length / markersPerSeries))
  )

/** Series closer than this fraction of the panel's value range at every point are called coinciding. */
const coincidence = 0.002

/** Groups of series drawn over one another: the same x positions, values within {@link coincidence} of the range. */
const coinciding = (
  lines: ReadonlyArray<readonly [string, ReadonlyArray<Row>]>,
  scale: Scale
): ReadonlyArray<ReadonlyArray<string>> => {
  const at = (v: number) => scale === "log" ? Math.log10(v) : v
  const values = lines.flatMap(([, rows]) => rows.map((r) => at(r.value)))
  // A fold, not Math.max(...values): a sweep's series can hold more points than a call takes arguments.
  const range = values.reduce((r, v) => [Math.min(r[0], v), Math.max(r[1], v)] as const, [Infinity, -Infinity] as const)
  const tolerance = coincidence * (range[1] - range[0])
  const same = (a: ReadonlyArray<Row>, b: ReadonlyArray<Row>) =>
    a.length === b.length &&
    a.every((r, j) => r.x === b[j]!.x && Math.abs(at(r.value) - at(b[j]!.value)) <= tolerance)
  const groups: Array<{ rows: ReadonlyArray<Row>; names: Array<string> }> = []
  for (const [name, rows] of lines) {
    if (rows.length === 0) continue
    const group = groups.find((g) => same(g.rows, rows))
    if (group === undefined) groups.push({ rows, names: [name] })
    else group.names.push(name)
  }
  return groups.filter((g) => g.names.length > 1).map((g) => g.names)
}

/** Each step's x position: its outer step, or the wall time or cost of its run up to and including it. */
const xPositions = (runs: ReadonlyArray<RunRecord>, axis: XAxis): ReadonlyMap<StepRecord, number> => {
  const increment = (step: StepRecord) => axis === "time" ? step.ms / 1000 : axis === "step" ? 0 : step.cost[axis]
  const positions = new Map<StepRecord, number>()
  for (const run of runs) {
    let total = 0
    for (const step of run.steps) {
      total += increment(step)
      positions.set(step, axis === "step" ? step.t : total)
    }
  }
  return positions
}

const xTitles: Record<XAxis, string> = {
  step: "outer step",
  time: "wall time (s)",
  innerSteps: "LL steps (cumulative)",
  reverseSteps: "reverse steps (cumulative)",
  hvps: "Hessian-vector products (cumulative)"
}

/** Axis titles of the fields every run records; a task's metric is its name in words (`testAccuracy`: test accuracy). */
const fieldTitles: Record<string, string> = {
  F: "UL objective F",
  kbar: "PTT index k̄",
  hypergradNorm: "hypergradient norm",
  ms: "ms per outer step",
  "cost.innerSteps": "LL steps per outer step",
  "cost.reverseSteps": "reverse steps per outer step",
  "cost.hvps": "HVPs per outer step",
  "cost.peakBytes": "peak tensor bytes"
}

const readableName = (metric: string): string =>
  // camelCase to words; a lone capital is a symbol and keeps its case (exactF: "exact F", testAccuracyZ: "test accuracy Z").
  fieldTitles[metric] ??
    metric.replace(/([a-z0-9])([A-Z])([a-z]?)/g, (_, a: string, b: string, c: string) => `${a} ${c === "" ? b : b.toLowerCase()}${c}`)

/** Dash patterns and marker shapes cycle with coprime periods, so the first 56 series differ in both or one. */
const dashes = [[1, 0], [6, 3], [2, 2], [8, 3, 2, 3], [1, 3], [12, 4], [4, 2, 1, 2, 1, 2]]
const shapes = ["circle", "square", "triangle-up", "diamond", "cross", "triangle-down", "triangle-right", "triangle-left"]

const spec = (panels: ReadonlyArray<PanelData>, names: ReadonlyArray<string>, options: PlotOptions): vl.TopLevelSpec => {
  // One legend: colour, dash and marker all encode the series, in the order the series were given.
  const by = (range: ReadonlyArray<unknown>) => ({
    field: "series",
    type: "nominal" as const,
    title: "series",
    scale: { domain: [...names], range: range as Array<string> }
  })
  return {
    ...(options.title === undefined ? {} : { title: options.title }),
    data: { values: panels.flatMap((p) => p.rows) as Array<Row> },
    config: {
      // resvg maps the generic sans-serif to Arial alone; naming common families keeps PNG text sans where Arial is missing.
      font: "Helvetica, Arial, DejaVu Sans, Liberation Sans, sans-serif",
      axis: { titleFontSize: 13, labelFontSize: 11 },
      // Symbols at full opacity: the band's would otherwise make them faint.
      legend: { titleFontSize: 12, labelFontSize: 12, labelLimit: 480, symbolSize: 120, symbolOpacity: 1 }
    },
    // One x range for every panel, so a step lines up down the page.
    resolve: { scale: { x: "shared" } },
    vconcat: panels.map((p) => {
      const y = {
        field: "value",
        type: "quantitative" as const,
        title: p.title,
        scale: p.scale === "linear" ? { zero: false } : { type: p.scale }
      }
      return {
        width: 480,
        height: 240,
        ...(p.notes.length === 0
          ? {}
          : { title: { text: p.notes.flatMap((note) => wrap(note, noteWidth)), fontSize: 11, fontWeight: "normal" as const, anchor: "start" as const } }),
        transform: [{ filter: { field: "metric", equal: p.metric } }],
        encoding: {
          x: {
            field: "x",
            type: "quantitative" as const,
            title: xTitles[options.x ?? "step"],
            // Outer steps and cost counters are whole numbers.
            ...(options.x === "time" ? {} : { axis: { tickMinStep: 1 } })
          },
          color: by(colours(names, options.colourGroup))
        },
        layer: [
          ...(p.band
            ? [{ mark: { type: "area" as const, opacity: 0.2 }, encoding: { y: { ...y, field: "lower" }, y2: { field: "upper" } } }]
            : []),
          { mark: { type: "line" as const, strokeWidth: 1.75 }, encoding: { y, strokeDash: by(dashes) } },
          {
            transform: [{ filter: "datum.marker" }],
            // Hollow, so that markers at one point show each of their outlines.
            mark: { type: "point" as const, filled: false, size: 50, strokeWidth: 1.5, opacity: 1 },
            encoding: { y, shape: by(shapes) }
          }
        ]
      }
    })
  } as vl.TopLevelSpec
}

/**
 * Characters per line of a panel's notes. Without a canvas, Vega sizes text as 0.8 × font size per character, and
 * lays the panels and the legend out by that estimate: 60 characters at 11 px stay within a panel and its axis.
 */
const noteWidth = 60

/** `text` in lines of at most `width` characters, broken at spaces (Vega does not wrap titles). */
const wrap = (text: string, width: number): ReadonlyArray<string> =>
  text.split(" ").reduce<Array<string>>((lines, word) => {
    const last = lines.at(-1)
    if (last !== undefined && last.length + 1 + word.length <= width) lines[lines.length - 1] = `${last} ${word}`
    else lines.push(word)
    return lines
  }, [])

/** Each series' colour: its group's, in the order the groups first appear, so paired series share one. */
const colours = (names: ReadonlyArray<string>, group: (series: string) => string = (series) => series) => {
  const groups = [...new Set(names.map(group))]
  return names.map((name) => schemeCategory10[groups.indexOf(group(name)) % schemeCategory10.length]!)
}

/** Vega's category10 colours, given explicitly because a scale with a custom domain needs its range. */
const schemeCategory10 = [
  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"
]

const refuse = (uri: string) => Promise.reject(new Error(`plots load nothing, but "${uri}" was requested`))
const offline: vega.Loader = { load: refuse, sanitize: refuse, http: refuse, file: refuse }

/** Renders any Vega-Lite spec to SVG offline (for figures that are not runs over outer steps). */
export const renderSvg = (figure: vl.TopLevelSpec) =>
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
