/**
 * Statistics over seeds: 3 methods × 3 seeds of short toy-llc runs (the seed draws x₀ and z₀), grouped by
 * configuration; the compare table's mean ± std and the plot's bands are checked against numbers computed here
 * from the run records.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Effect, FileSystem, Layer } from "effect"
import * as path from "node:path"
import { groupByConfiguration, statistic, stepStatistics, variedSettings } from "../src/runtime/aggregate.ts"
import * as Backend from "../src/runtime/Backend.ts"
import { compareConfigurations } from "../src/runtime/compare.ts"
import { plotRuns } from "../src/runtime/plot.ts"
import { run } from "../src/runtime/run.ts"
import * as RunRecord from "../src/runtime/RunRecord.ts"
import { bilevel } from "./support/cli.ts"
import { scratchDir } from "./support/scratch.ts"
import { elements, parseSvg, withClass } from "./support/svg.ts"

const scratch = scratchDir("aggregate")
const methods = ["rhg", "ia-gm", "iaptt-gm"]
const seeds = [0, 1, 2]
const outerSteps = 4

// Seed-major, so each configuration's runs are spread through the list, as a sweep's finishing order would have them;
// run once, for all the tests below.
const sweep = Effect.runSync(Effect.cached(Effect.forEach(seeds.flatMap((seed) => methods.map((method) => ({ seed, method }))), ({ method, seed }) =>
  run({
    task: "toy-llc",
    method,
    seed,
    settings: { n: 3, outerSteps, innerSteps: 5 },
    out: path.join(scratch, `${method}-${seed}`)
  }).pipe(Effect.flatMap((result) => RunRecord.read(result.runDir))))))

/** Mean and sample standard deviation, written out. */
const meanStd = (xs: ReadonlyArray<number>) => {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length
  return { mean, std: Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (xs.length - 1)) }
}

const rounded = (v: number) => String(Number(v.toPrecision(4)))

layer(Layer.merge(Backend.layer("cpu"), NodeServices.layer), { timeout: 120_000 })("statistics over seeds", (it) => {
  it.effect("groups 3 methods × 3 seeds into 3 configurations, whatever the order of the runs", () =>
    Effect.gen(function*() {
      const runs = yield* sweep
      const configurations = groupByConfiguration(runs)
      assert.deepStrictEqual(configurations.map((c) => c.method), methods)
      assert.deepStrictEqual(configurations.map((c) => c.runs.map((r) => r.info.seed)), methods.map(() => seeds))
      // The methods' own settings (BDA's μ₀ and so on) are absent from the others': only a real difference counts.
      assert.deepStrictEqual(variedSettings(configurations), [])
      // Seeds differ in x₀, so the spread is not zero (a test of mean ± std that could not fail otherwise).
      const F0 = runs.filter((r) => r.info.method === "rhg").map((r) => r.steps[0]!.F)
      assert.isAbove(meanStd(F0).std, 0)
    }))

  it.effect("compare: one row per method with mean ± std and n of each final metric over its seeds", () =>
    Effect.gen(function*() {
      const runs = yield* sweep
      const lines = compareConfigurations(runs, { format: "markdown", metrics: ["F", "xError"] }).trimEnd().split("\n")
      const cells = (line: string) => line.slice(2, -2).split(" | ").map((c) => c.trim())
      const header = cells(lines[0]!)
      assert.deepStrictEqual(header.slice(0, 7), ["task", "method", "n", "seeds", "status", "F", "xError"])
      assert.strictEqual(lines.length, 2 + methods.length)
      for (const [i, method] of methods.entries()) {
        const row = cells(lines[2 + i]!)
        const own = runs.filter((r) => r.info.method === method)
        assert.deepStrictEqual(row.slice(0, 5), ["toy-llc", method, "3", "0 1 2", "3 completed"])
        for (const metric of ["F", "xError"]) {
          const { mean, std } = meanStd(own.map((r) => r.summary!.final[metric] as number))
          assert.strictEqual(row[header.indexOf(metric)], `${rounded(mean)} ± ${rounded(std)}`, `${method} ${metric}`)
        }
        const ms = meanStd(own.map((r) => r.steps.reduce((a, s) => a + s.ms, 0) / r.steps.length))
        assert.strictEqual(row[header.indexOf("mean ms")], `${rounded(ms.mean)} ± ${rounded(ms.std)}`)
      }

      const json = JSON.parse(compareConfigurations(runs, { format: "json", metrics: ["F"] })) as Array<Record<string, unknown>>
      for (const [i, method] of methods.entries()) {
        const { mean, std } = meanStd(runs.filter((r) => r.info.method === method).map((r) => r.summary!.final["F"] as number))
        assert.closeTo(json[i]!["F mean"] as number, mean, 1e-12 * Math.abs(mean))
        assert.closeTo(json[i]!["F std"] as number, std, 1e-9 * std)
        assert.strictEqual(json[i]!["F n"], 3)
      }
    }))

  it.effect("plot: one band and one mean line per method, the band spanning mean ± std at every outer step", () =>
    Effect.gen(function*() {
      const runs = yield* sweep
      const doc = parseSvg(yield* plotRuns(runs, { metrics: ["F"], scale: "log" }))
      const bands = withClass(doc, "g", "mark-area").flatMap((g) => elements(g, "path"))
      const lines = withClass(doc, "g", "mark-line").flatMap((g) => elements(g, "path"))
      const legend = withClass(doc, "g", "role-legend-label").flatMap((g) => elements(g, "text")).map((t) => t["#text"])
      assert.deepStrictEqual(legend, methods.map((m) => `${m} (n = 3)`))
      assert.strictEqual(bands.length, methods.length)
      assert.strictEqual(lines.length, methods.length)

      // The band's outline goes out along mean + std and back along mean − std: 2 × outerSteps vertices, whose
      // heights on the log axis must be those of the numbers computed here (compared as ratios of pixel distances).
      const ys = (d: unknown) => [...String(d).matchAll(/[ML][^,]+,([-\d.e]+)/g)].map((m) => Number(m[1]))
      const points = methods.map((method) => {
        const F = (t: number) => runs.filter((r) => r.info.method === method).map((r) => r.steps[t]!.F)
        return Array.from({ length: outerSteps }, (_, t) => meanStd(F(t)))
      })
      const log = Math.log10
      const all = points.flat()
      const [a, b] = [all[0]!, all[1]!]
      const [pa, pb] = [ys(lines[0]!["@_d"])[0]!, ys(lines[0]!["@_d"])[1]!]
      const pixelsPerDecade = (pb - pa) / (log(b.mean) - log(a.mean))
      for (const [i, band] of bands.entries()) {
        // Out along one edge and back along the other.
        const outline = ys(band["@_d"])
        assert.strictEqual(outline.length, 2 * outerSteps)
        const edges = [outline.slice(0, outerSteps), outline.slice(outerSteps).reverse()]
        const line = ys(lines[i]!["@_d"])
        for (const [t, p] of points[i]!.entries()) {
          const measured = edges.map((edge) => edge[t]! - line[t]!).sort((u, v) => u - v)
          const expected = [p.mean + p.std, p.mean - p.std].map((v) => pixelsPerDecade * (log(v) - log(p.mean)))
          assert.deepStrictEqual(measured.map((m) => m.toFixed(1)), expected.sort((u, v) => u - v).map((e) => e.toFixed(1)))
        }
      }
      // The same numbers through the module's own API.
      const [rhg] = groupByConfiguration(runs)
      const s = stepStatistics(rhg!.runs, (step) => step.F)
      assert.deepStrictEqual(s.map((p) => p.n), [3, 3, 3, 3])
      assert.closeTo(s[0]!.std!, points[0]![0]!.std, 1e-12)
    }))

  it.effect("the CLI groups by configuration when seeds repeat, lists runs with --group run, and takes name:scale", () =>
    Effect.gen(function*() {
      const runs = yield* sweep
      const fs = yield* FileSystem.FileSystem
      const dirs = runs.map((run) => run.dir)
      const rows = (text: string) => JSON.parse(text) as Array<Record<string, unknown>>
      const grouped = yield* Effect.promise(() => bilevel(["compare", ...dirs, "--format", "json", "--metric", "F"]))
      assert.deepStrictEqual(rows(grouped.stdout).map((r) => [r["method"], r["F n"]]), methods.map((m) => [m, 3]))
      const each = yield* Effect.promise(() => bilevel(["compare", ...dirs, "--format", "json", "--group", "run"]))
      assert.strictEqual(rows(each.stdout).length, 9)

      const svg = path.join(scratch, "bands.svg")
      const plotted = yield* Effect.promise(() => bilevel(["plot", ...dirs, "--metric", "F:symlog", "--out", svg]))
      assert.strictEqual(plotted.code, 0, plotted.stderr)
      const doc = parseSvg(yield* fs.readFileString(svg))
      assert.strictEqual(withClass(doc, "g", "mark-area").flatMap((g) => elements(g, "path")).length, 3)
      const wrong = yield* Effect.promise(() => bilevel(["plot", ...dirs, "--metric", "F:logg", "--out", svg]))
      assert.strictEqual(wrong.code, 1)
      assert.include(wrong.stderr, "\"logg\" is not a scale; use one of linear, log, symlog")
    }))
})

layer(NodeServices.layer)("statistic", (it) => {
  it.effect("is the mean and sample std of the finite numbers, undefined std for one and nothing for none", () =>
    Effect.sync(() => {
      assert.deepStrictEqual(statistic([2, 4, 4, 4, 5, 5, 7, 9]), { mean: 5, std: Math.sqrt(32 / 7), n: 8 })
      assert.deepStrictEqual(statistic([3, undefined, Number.NaN, "4"]), { mean: 3, std: undefined, n: 1 })
      assert.strictEqual(statistic([]), undefined)
    }))
})
