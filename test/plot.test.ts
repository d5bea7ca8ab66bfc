import { NodeServices } from "@effect/platform-node"
import { assert, describe, it, vi } from "@effect/vitest"
import { Effect, FileSystem } from "effect"
import { compareRuns } from "../src/runtime/compare.ts"
import { plotRuns, svgToPng, writePlot } from "../src/runtime/plot.ts"
import * as RunRecord from "../src/runtime/RunRecord.ts"
import { elements, parseSvg, withClass } from "./support/svg.ts"

// Labels with a comma, a quote and a pipe, so CSV quoting and Markdown escaping are exercised.
const specs = [
  { label: "IAPTT-GM", method: "iaptt-gm", seed: 0, rate: 10, status: "completed" },
  { label: "RHG, K=5", method: "rhg", seed: 1, rate: 5, status: "completed" },
  { label: "BDA \"fast\" | v2", method: "bda", seed: 2, rate: 20, status: "failed" }
] as const
const steps = 30

const writeRuns = Effect.fnUntraced(function*(root: string) {
  for (const [i, spec] of specs.entries()) {
    const writer = yield* RunRecord.writer(`${root}/run${i}`, {
      task: "toy",
      method: spec.method,
      label: spec.label,
      backend: "cpu",
      seed: spec.seed,
      config: {},
      versions: {},
      startedAt: "2026-01-01T00:00:00Z"
    })
    for (let t = 0; t < steps; t++) {
      yield* writer.appendStep({
        t,
        F: Math.exp(-t / spec.rate),
        kbar: t % 4,
        hypergradNorm: 1,
        ms: 2 * (i + 1),
        cost: { innerSteps: 10 * (i + 1), reverseSteps: 10, hvps: i, peakBytes: (i + 1) * 2 ** 20 },
        xError: 1 / (t + 1),
        // Logged every 10 steps only: a plot must skip the other steps, not draw them as 0.
        ...(t % 10 === 0 ? { testAccuracy: 0.5 + t / 100 } : {})
      })
    }
    yield* writer.finish({
      status: spec.status,
      outerSteps: steps,
      final: spec.status === "failed" ? { F: 0.25 } : { F: Math.exp(-steps / spec.rate), testAccuracy: 0.8 },
      wallMs: 1000,
      ...(spec.status === "failed" ? { error: "Diverged" } : {})
    })
  }
})

const readRuns = Effect.gen(function*() {
  const fs = yield* FileSystem.FileSystem
  const root = yield* fs.makeTempDirectoryScoped()
  yield* writeRuns(root)
  return yield* Effect.forEach(specs, (_, i) => RunRecord.read(`${root}/run${i}`))
})


/** A run held in memory with F = `F(t)` for `length` outer steps. */
const memoryRun = (
  info: { readonly method: string; readonly seed?: number; readonly config?: Record<string, unknown> },
  F: (t: number) => number,
  length = steps
): RunRecord.RunRecord => ({
  dir: `/nowhere/${info.method}`,
  info: {
    task: "toy",
    method: info.method,
    label: info.method,
    backend: "cpu",
    seed: info.seed ?? 0,
    config: info.config ?? {},
    versions: {},
    startedAt: "2026-01-01T00:00:00Z"
  },
  steps: Array.from({ length }, (_, t) => ({
    t,
    F: F(t),
    kbar: 1,
    hypergradNorm: 1,
    ms: 1,
    cost: { innerSteps: 1, reverseSteps: 1, hvps: 0, peakBytes: 0 },
    xError: 2 * F(t),
    exactF: F(t)
  })),
  summary: undefined
})

/** The markers drawn on the lines (not those of the legend). */
const markers = (doc: unknown) =>
  withClass(doc, "g", "mark-symbol").filter((g) => String(g["@_class"]).includes("role-mark"))
    .flatMap((g) => elements(g, "path"))

/** The titles: the notes above the panels (what a log axis dropped, which series coincide), unwrapped. */
const panelNotes = (doc: unknown) =>
  withClass(doc, "g", "role-title-text").map((g) => String(g["@_aria-label"]).replace(/^Title text '(.*)'$/, "$1"))

/** The records of an RFC 4180 document that ends with CRLF, unquoted. */
const parseCsv = (text: string): Array<Array<string>> => {
  const records: Array<Array<string>> = [[]]
  let cell = ""
  let quoted = false
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (quoted && c === "\"" && text[i + 1] === "\"") {
      cell += "\""
      i++
    } else if (c === "\"") {
      quoted = !quoted
    } else if (!quoted && c === ",") {
      records.at(-1)!.push(cell)
      cell = ""
    } else if (!quoted && c === "\r" && text[i + 1] === "\n") {
      records.at(-1)!.push(cell)
      records.push([])
      cell = ""
      i++
    } else {
      cell += c
    }
  }
  return records.slice(0, -1)
}

/** The cells of a Markdown table row, unescaped. */
const markdownCells = (line: string) =>
  line.slice(2, -2).split(/ (?<!\\)\| /).map((cell) => cell.trim().replaceAll("\\|", "|"))

describe("plotRuns", () => {
  it.effect("draws one line per run per metric, skips absent steps and fetches nothing", () =>
    Effect.gen(function*() {
      const runs = yield* readRuns
      const fetch = vi.spyOn(globalThis, "fetch")
      const svg = yield* plotRuns(runs, { metrics: ["F", "testAccuracy"], title: "toy", scale: "log", legend: "label" })
      assert.strictEqual(fetch.mock.calls.length, 0)
      fetch.mockRestore()

      const doc = parseSvg(svg)
      const lines = withClass(doc, "g", "mark-line").flatMap((g) => elements(g, "path"))
      assert.strictEqual(lines.length, specs.length * 2)
      const vertices = (path: Record<string, unknown>) => String(path["@_d"]).split(/[ML]/).length - 1
      const accuracy = lines.filter((p) => String(p["@_aria-label"]).includes("test accuracy"))
      assert.deepStrictEqual(accuracy.map(vertices), specs.map(() => steps / 10))
      assert.deepStrictEqual(lines.filter((p) => !accuracy.includes(p)).map(vertices), specs.map(() => steps))

      const legend = withClass(doc, "g", "role-legend-label").flatMap((g) => elements(g, "text"))
      assert.deepStrictEqual(legend.map((t) => t["#text"]), specs.map((s) => s.label))
      const axisTitles = withClass(doc, "g", "role-axis-title").flatMap((g) => elements(g, "text"))
      assert.includeMembers(axisTitles.map((t) => t["#text"]), ["outer step", "UL objective F", "test accuracy"])
      // A sparse metric (every 10 steps) has a marker on each of its points.
      assert.strictEqual(markers(doc).filter((p) => String(p["@_aria-label"]).includes("test accuracy")).length, specs.length * 3)
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("tells every series apart without colour: its own dash pattern and marker shape", () =>
    Effect.gen(function*() {
      // Nine runs of one constant F: every line lies on every other, the case colour alone cannot show.
      const runs = Array.from({ length: 9 }, (_, i) => memoryRun({ method: `m${i}` }, () => 1))
      const doc = parseSvg(yield* plotRuns(runs, { metrics: ["F"] }))
      const seriesOf = (path: Record<string, unknown>) => /series: (.*)$/.exec(String(path["@_aria-label"]))![1]
      const lines = withClass(doc, "g", "mark-line").flatMap((g) => elements(g, "path"))
      const points = markers(doc)
      const names = runs.map((run) => run.info.method)
      assert.deepStrictEqual(lines.map(seriesOf), names)
      const dash = new Map(lines.map((p) => [seriesOf(p), String(p["@_stroke-dasharray"])]))
      const shape = new Map(names.map((name) => {
        const own = new Set(points.filter((p) => seriesOf(p) === name).map((p) => String(p["@_d"])))
        assert.strictEqual(own.size, 1, name)
        return [name, [...own][0]!]
      }))
      // The first 7 series differ in dash and the first 8 in marker; every pair of the 9 differs in one or both.
      assert.strictEqual(new Set(names.slice(0, 7).map((n) => dash.get(n))).size, 7)
      assert.strictEqual(new Set(names.slice(0, 8).map((n) => shape.get(n))).size, 8)
      assert.strictEqual(new Set(names.map((n) => `${dash.get(n)} ${shape.get(n)}`)).size, 9)
      // 30 points each: markers on all; lines drawn over one another are named in a note above the panel.
      assert.strictEqual(points.length, 9 * steps)
      assert.deepStrictEqual(panelNotes(doc), [`${names.join(" = ")}: drawn over one another (within 0.2% of the axis range)`])
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("a colour group gives paired series one colour, still told apart by dash and marker", () =>
    Effect.gen(function*() {
      const names = ["rhg", "rhg-warm", "ns", "ns-warm", "t-rhg"]
      const runs = names.map((method, i) => memoryRun({ method }, (t) => i + t))
      const strokes = (svg: string) => {
        const lines = withClass(parseSvg(svg), "g", "mark-line").flatMap((g) => elements(g, "path"))
        return new Map(lines.map((p) => [/series: (.*)$/.exec(String(p["@_aria-label"]))![1]!, String(p["@_stroke"])]))
      }
      const paired = strokes(yield* plotRuns(runs, { metrics: ["F"], colourGroup: (name) => name.replace(/-warm$/, "") }))
      assert.strictEqual(paired.get("rhg-warm"), paired.get("rhg"))
      assert.strictEqual(paired.get("ns-warm"), paired.get("ns"))
      assert.strictEqual(new Set(["rhg", "ns", "t-rhg"].map((n) => paired.get(n))).size, 3)
      const own = strokes(yield* plotRuns(runs, { metrics: ["F"] }))
      assert.strictEqual(new Set(names.map((n) => own.get(n))).size, 5, "by default every series its own colour")
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("staggers the markers of long series, so lines drawn over one another each show theirs", () =>
    Effect.gen(function*() {
      const runs = ["a", "b"].map((method) => memoryRun({ method }, () => 1, 200))
      const doc = parseSvg(yield* plotRuns(runs, { metrics: ["F"] }))
      const at = (name: string) =>
        markers(doc)
          .filter((p) => String(p["@_aria-label"]).endsWith(`series: ${name}`))
          .map((p) => /outer step: (\d+)/.exec(String(p["@_aria-label"]))![1])
      assert.strictEqual(at("a").length, 12)
      assert.strictEqual(at("b").length, 12)
      assert.strictEqual(at("a").filter((t) => at("b").includes(t)).length, 0)
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("plots series longer than a function call takes arguments (a long sweep's)", () =>
    Effect.gen(function*() {
      const long = 80_000
      const runs = [memoryRun({ method: "a" }, (t) => 1 / (t + 1), long), memoryRun({ method: "b" }, (t) => 2 / (t + 1), long)]
      const doc = parseSvg(yield* plotRuns(runs, { metrics: ["F"], scale: "log" }))
      assert.lengthOf(withClass(doc, "g", "mark-line"), 2, "one line per series")
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("says on a log axis how many values ≤ 0 it could not show, and of which series", () =>
    Effect.gen(function*() {
      // a: F = t − 5, so t = 0..5 are ≤ 0 (6 values); b: all positive.
      const runs = [memoryRun({ method: "a" }, (t) => t - 5), memoryRun({ method: "b" }, (t) => t + 1)]
      const doc = parseSvg(yield* plotRuns(runs, { metrics: ["F", "xError"], panels: { F: { scale: "log" } } }))
      assert.deepStrictEqual(panelNotes(doc), [`log scale: 6 of ${2 * steps} values ≤ 0 not shown (a: 6)`])
      const axes = withClass(doc, "g", "role-axis").map((g) => String(g["@_aria-label"]))
      assert.isTrue(axes.some((a) => a.includes("'UL objective F' for a log scale")))
      assert.isTrue(axes.some((a) => a.includes("'x error' for a linear scale")))
      const symbol = parseSvg(yield* plotRuns(runs, { metrics: ["exactF"] }))
      assert.isTrue(withClass(symbol, "g", "role-axis").some((g) => String(g["@_aria-label"]).includes("'exact F'")), "a lone capital is a symbol")
      const drawn = withClass(doc, "g", "mark-line").flatMap((g) => elements(g, "path"))
      assert.strictEqual(String(drawn[0]!["@_d"]).split(/[ML]/).length - 1, steps - 6)

      // symlog shows them all and says nothing.
      const symlog = parseSvg(yield* plotRuns(runs, { metrics: ["F"], scale: "symlog" }))
      assert.deepStrictEqual(panelNotes(symlog), [])
      // Two seeds of one configuration, mean 1.55 and std 2.05: the mean is drawn, a band down to −0.5 is not.
      const spread = [0.1, 3].map((F, seed) => memoryRun({ method: "a", seed }, () => F))
      assert.deepStrictEqual(panelNotes(parseSvg(yield* plotRuns(spread, { metrics: ["F"], scale: "log" }))), [
        `log scale: no band at ${steps} points where mean − std ≤ 0`
      ])
      const error = yield* Effect.flip(plotRuns([memoryRun({ method: "a" }, () => -1)], { metrics: ["F"], scale: "log" }))
      assert.include(error.message, "no positive value to show on a log scale")
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("names the series a panel has nothing of, so a legend entry without a line is explained", () =>
    Effect.gen(function*() {
      const a = memoryRun({ method: "a" }, (t) => t)
      const b = memoryRun({ method: "b" }, (t) => t + 1)
      const failedEarly = { ...b, steps: b.steps.map(({ xError: _, ...rest }) => rest) }
      const doc = parseSvg(yield* plotRuns([a, failedEarly], { metrics: ["F", "xError"] }))
      assert.deepStrictEqual(panelNotes(doc), ["nothing recorded: b"])
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("names series by what differs between the runs: method, settings, seed", () =>
    Effect.gen(function*() {
      const runs = [
        memoryRun({ method: "rhg", seed: 0, config: { innerSteps: 5, cgIters: 3 } }, () => 1),
        memoryRun({ method: "rhg", seed: 1, config: { innerSteps: 5, cgIters: 3 } }, () => 2),
        memoryRun({ method: "ls", seed: 0, config: { innerSteps: 10, cgIters: 3 } }, () => 3),
        memoryRun({ method: "bda", seed: 0, config: { innerSteps: 10, mu0: 0.5 } }, () => 4)
      ]
      const legend = (svg: string) =>
        withClass(parseSvg(svg), "g", "role-legend-label").flatMap((g) => elements(g, "text")).map((t) => t["#text"])
      assert.deepStrictEqual(legend(yield* plotRuns(runs, { metrics: ["F"], group: "run" })), [
        "rhg, innerSteps=5, seed 0",
        "rhg, innerSteps=5, seed 1",
        "ls, innerSteps=10, seed 0",
        "bda, innerSteps=10, seed 0"
      ])
      // By configuration (the default here, since rhg has two seeds): the seed no longer tells series apart.
      assert.deepStrictEqual(legend(yield* plotRuns(runs, { metrics: ["F"] })), [
        "rhg, innerSteps=5 (n = 2)",
        "ls, innerSteps=10 (n = 1)",
        "bda, innerSteps=10 (n = 1)"
      ])
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("puts wall time or cumulative cost on the x axis", () =>
    Effect.gen(function*() {
      const runs = yield* readRuns
      for (const [x, title, per] of [
        ["time", "wall time (s)", (i: number) => 2 * (i + 1) / 1000],
        ["innerSteps", "LL steps (cumulative)", (i: number) => 10 * (i + 1)]
      ] as const) {
        const doc = parseSvg(yield* plotRuns(runs, { metrics: ["F"], x }))
        const points = markers(doc)
        for (const [i] of specs.entries()) {
          const own = points.slice(i * steps, (i + 1) * steps).map((p) => String(p["@_aria-label"]))
          assert.include(own[0], `${title}: ${per(i)};`)
          assert.include(own[steps - 1], `${title}: ${Number((steps * per(i)).toPrecision(12))};`)
        }
      }
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("names the recorded metrics when asked for one that is not", () =>
    Effect.gen(function*() {
      const runs = yield* readRuns
      const error = yield* Effect.flip(plotRuns(runs, { metrics: ["accuracy"] }))
      assert.strictEqual(error._tag, "PlotError")
      assert.include(error.message, "\"accuracy\"")
      assert.include(
        error.message,
        "Recorded metrics: F, kbar, hypergradNorm, ms, xError, testAccuracy, " +
          "cost.innerSteps, cost.reverseSteps, cost.hvps, cost.peakBytes."
      )
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("writes SVG and PNG by extension and refuses others", () =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const runs = yield* readRuns
      const out = yield* fs.makeTempDirectoryScoped()
      yield* writePlot(runs, { metrics: ["F"] }, `${out}/f.svg`)
      yield* writePlot(runs, { metrics: ["F"] }, `${out}/f.PNG`)
      parseSvg(yield* fs.readFileString(`${out}/f.svg`))
      const png = yield* fs.readFile(`${out}/f.PNG`)
      assert.deepStrictEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
      const direct = yield* svgToPng(yield* plotRuns(runs, { metrics: ["F"] }))
      assert.deepStrictEqual([...direct.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47])

      const error = yield* Effect.flip(writePlot(runs, { metrics: ["F"] }, `${out}/f.jpg`))
      assert.include(error.message, ".svg, .png")
    }).pipe(Effect.provide(NodeServices.layer)))
})

describe("compareRuns", () => {
  const header = [
    "label",
    "method",
    "task",
    "seed",
    "status",
    "outerSteps",
    "F",
    "testAccuracy",
    "mean ms",
    "mean innerSteps",
    "mean reverseSteps",
    "mean hvps",
    "mean peak MiB",
    "mean kbar"
  ]
  const expected = specs.map((s, i) => [
    s.label,
    s.method,
    "toy",
    String(s.seed),
    s.status,
    String(steps),
    s.status === "failed" ? "0.25" : String(Number(Math.exp(-steps / s.rate).toPrecision(4))),
    s.status === "failed" ? "" : "0.8",
    String(2 * (i + 1)),
    String(10 * (i + 1)),
    "10",
    String(i),
    String(i + 1),
    "1.433" // kbar cycles 0..3 over 30 steps: 43 / 30
  ])

  it.effect("makes an aligned Markdown table with one row per run", () =>
    Effect.gen(function*() {
      const runs = yield* readRuns
      const table = compareRuns(runs, { format: "markdown" }).trimEnd().split("\n")
      assert.strictEqual(table.length, 2 + specs.length)
      assert.deepStrictEqual(markdownCells(table[0]!), header)
      assert.match(table[1]!, /^\| -+ \| -+ \| -+ \| -+: \|/)
      assert.deepStrictEqual(table.slice(2).map(markdownCells), expected)
      assert.isTrue(table.every((line) => line.length === table[0]!.length))
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("makes CSV that parses back to the same cells", () =>
    Effect.gen(function*() {
      const runs = yield* readRuns
      const csv = compareRuns(runs, { format: "csv" })
      assert.include(csv, "\"RHG, K=5\"")
      assert.include(csv, "\"BDA \"\"fast\"\" | v2\"")
      assert.deepStrictEqual(parseCsv(csv), [header, ...expected])
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("makes JSON rows with raw values, restricted to the given metrics", () =>
    Effect.gen(function*() {
      const runs = yield* readRuns
      const rows = JSON.parse(compareRuns(runs, { format: "json", metrics: ["F"] })) as Array<Record<string, unknown>>
      assert.strictEqual(rows.length, specs.length)
      assert.deepStrictEqual(Object.keys(rows[0]!), header.filter((h) => h !== "testAccuracy"))
      assert.deepStrictEqual(rows.map((r) => r["F"]), runs.map((run) => run.summary!.final["F"]))
      assert.deepStrictEqual(rows.map((r) => r["label"]), specs.map((s) => s.label))
      assert.deepStrictEqual(rows.map((r) => r["mean peak MiB"]), [1, 2, 3])
      assert.closeTo(rows[0]!["mean kbar"] as number, 43 / 30, 1e-12)
    }).pipe(Effect.provide(NodeServices.layer)))
})
