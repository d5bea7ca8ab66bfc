/**
 * `bilevel reproduce` on a tiny Fig. 1 (a few outer steps): the report has one table row per method
 * and init and the acceptance bars, each figure has one line per run in each panel, run records are
 * never overwritten unless asked, and experiment settings are decoded with their defaults.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Effect, FileSystem, Layer } from "effect"
import * as path from "node:path"
import * as Backend from "../src/runtime/Backend.ts"
import { decodeSettings, type ExperimentOptions } from "../src/runtime/reproduce/Experiment.ts"
import { experiments } from "../src/runtime/reproduce/experiments.ts"
import { fig1, inits, methods } from "../src/runtime/reproduce/fig1.ts"
import { elements, parseSvg, withClass } from "./support/svg.ts"
import { scratchDir } from "./support/scratch.ts"

const scratch = scratchDir("reproduce")
const out = path.join(scratch, "fig1")

const options = (settings: Record<string, unknown>, overwrite: boolean): ExperimentOptions<Record<string, unknown>> => ({
  out,
  seeds: [0],
  settings,
  command: "bilevel reproduce fig1 (test)",
  overwrite,
  progress: () => Effect.void
})


layer(Layer.merge(Backend.layer("cpu"), NodeServices.layer))("bilevel reproduce", (it) => {
  it.effect("a tiny fig1 writes its report with a row per method and init and one line per run in each figure", () =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const settings = yield* decodeSettings(fig1, { outerSteps: 3, innerSteps: 4 })
      assert.deepStrictEqual(settings, { outerSteps: 3, innerSteps: 4, innerLr: 0.0005, outerLr: 0.1 })
      const result = yield* fig1.run(options(settings, false))
      assert.strictEqual(result.report, `${out}/README.md`)
      const report = yield* fs.readFileString(result.report)

      assert.include(report, "- Command: `bilevel reproduce fig1 (test)`")
      assert.include(report, "- Backend: cpu")
      for (const [x0, y0] of inits) {
        for (const method of methods) {
          const row = report.split("\n").find((line) => line.startsWith(`| ${method} (${x0}, ${y0}) | 0 | `))
          assert.isDefined(row, `${method} (${x0}, ${y0})`)
          // run, seed, status, final x, y, F, tail mean, tail max deviation, verdict.
          assert.strictEqual(row!.split(" | ").length, 9)
          // Only the implicit methods may fail (an indefinite LL Hessian after 4 small LL steps), and the report
          // says why.
          if (row!.includes(" | failed | ")) {
            assert.include(["ls", "ns"], method)
            assert.include(report, `${method} (${x0}, ${y0}) (seed 0) failed after 0 outer steps: HypergradientFailed`)
          } else {
            assert.include(row, " | completed | ")
          }
        }
      }
      // Three outer steps cannot reach x*: every IAPTT-GM bar is reported, and reported as not met.
      assert.strictEqual(result.checks.length, inits.length)
      assert.isTrue(result.checks.every((c) => !c.passed))
      assert.strictEqual(report.split("\n").filter((line) => line.includes("| NOT met |")).length, inits.length)

      for (const [x0, y0] of inits) {
        const svg = yield* fs.readFileString(`${out}/fig1-init-${x0}_${y0}.svg`)
        const doc = parseSvg(svg)
        assert.isTrue(yield* fs.exists(`${out}/fig1-init-${x0}_${y0}.png`))
        const lines = withClass(doc, "g", "mark-line").flatMap((g) => elements(g, "path"))
        // One line per run in each panel (F, |x − x*|, y): its label names the panel's metric and the run, by the
        // one thing that differs between the runs of a figure, the method.
        const recorded = methods.filter((m) => !report.includes(`${m} (${x0}, ${y0}) (seed 0) failed after 0 outer steps`))
        for (const title of ["F(x, y)", "|x − x*|", "LL iterate y used by F"]) {
          const drawn = lines.map((p) => String(p["@_aria-label"])).filter((label) => label.includes(`; ${title}: `))
          assert.deepStrictEqual(drawn.map((label) => label.slice(label.indexOf("series: ") + 8)), recorded, title)
        }
        const legend = withClass(doc, "g", "role-legend-label").flatMap((g) => elements(g, "text"))
        assert.deepStrictEqual(legend.map((t) => t["#text"]), [...methods])
      }
    }))

  it.effect("refuses to overwrite earlier runs unless asked, then replaces them", () =>
    Effect.gen(function*() {
      const settings = yield* decodeSettings(fig1, { outerSteps: 2, innerSteps: 2 })
      const refused = yield* Effect.flip(fig1.run(options(settings, false)))
      assert.strictEqual(refused._tag, "RunRecordError")
      assert.include(refused.message, "--overwrite")
      const result = yield* fig1.run(options(settings, true))
      const report = yield* (yield* FileSystem.FileSystem).readFileString(result.report)
      assert.include(report, "\"outerSteps\":2")
    }))

  it.effect("experiment settings reject unknown keys and every experiment has a distinct name", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(decodeSettings(fig1, { outerStep: 3 }))
      assert.strictEqual(error._tag, "InvalidConfig")
      assert.include(error.message, "outerStep")
      const names = experiments.map((e) => e.name)
      assert.includeMembers(names, ["fig1", "table1", "fig2", "fig3-toy"])
      assert.strictEqual(new Set(names).size, names.length)
    }))
})
