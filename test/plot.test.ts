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
      const svg = yield* plotRuns(runs, { metrics: ["F", "testAccuracy"], title: "toy", scale: "log" })
      assert.strictEqual(fetch.mock.calls.length, 0)
      fetch.mockRestore()

      const doc = parseSvg(svg)
      const lines = withClass(doc, "g", "mark-line").flatMap((g) => elements(g, "path"))
      assert.strictEqual(lines.length, specs.length * 2)
      const vertices = (path: Record<string, unknown>) => String(path["@_d"]).split(/[ML]/).length - 1
      const accuracy = lines.filter((p) => String(p["@_aria-label"]).includes("testAccuracy"))
      assert.deepStrictEqual(accuracy.map(vertices), specs.map(() => steps / 10))
      assert.deepStrictEqual(lines.filter((p) => !accuracy.includes(p)).map(vertices), specs.map(() => steps))

      const legend = withClass(doc, "g", "role-legend-label").flatMap((g) => elements(g, "text"))
      assert.deepStrictEqual(legend.map((t) => t["#text"]), specs.map((s) => s.label))
      const axisTitles = withClass(doc, "g", "role-axis-title").flatMap((g) => elements(g, "text"))
      assert.includeMembers(axisTitles.map((t) => t["#text"]), ["outer step", "F", "testAccuracy"])
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
