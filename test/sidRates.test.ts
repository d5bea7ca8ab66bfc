/**
 * `bilevel reproduce sid-rates` at a tiny size: the report has the rate table with fitted slopes, the
 * cost table with a row per method and size, and its four figures; the slope fit on a known power law.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it as vitestIt, layer } from "@effect/vitest"
import { Effect, FileSystem, Layer } from "effect"
import * as path from "node:path"
import * as Backend from "../src/runtime/Backend.ts"
import { decodeSettings } from "../src/runtime/reproduce/Experiment.ts"
import { logLogSlope, sidRates } from "../src/runtime/reproduce/sidRates.ts"
import { scratchDir } from "./support/scratch.ts"

const scratch = scratchDir("sid-rates")

describe("log-log slope", () => {
  vitestIt("recovers the exponent of a power law", () => {
    assert.closeTo(logLogSlope([10, 30, 100, 300].map((t) => [t, 3 / t ** 1.5] as const)), -1.5, 1e-12)
  })
})

layer(Layer.merge(Backend.layer("cpu"), NodeServices.layer), { timeout: 300_000 })("sid-rates (tiny)", (it) => {
  it.effect("writes the rate table, the cost table and four figures", () =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const out = path.join(scratch, "sid-rates")
      const settings = yield* decodeSettings(sidRates, {
        trainSize: 200, features: 5, grid: "5,20", large: 20, fitFrom: 5, fitTo: 20, sizes: "200", costBatches: "20",
        costSeeds: 1, maxSteps: 32, target: 0.5
      })
      const result = yield* sidRates.run({ out, seeds: [0, 1], settings, command: "test", overwrite: false, progress: () => Effect.void })
      const report = yield* fs.readFileString(result.report)
      for (const series of ["t, β above", "k, β above", "t, constant η", "t, β too small"]) {
        assert.isDefined(report.split("\n").find((line) => line.startsWith(`| ${series} |`)), series)
      }
      for (const method of ["aid-fp", "rhg", "sid B=20"]) {
        assert.isDefined(report.split("\n").find((line) => line.startsWith(`| 200 | ${method} |`)), method)
      }
      assert.strictEqual(result.checks.length, 2)
      for (const name of ["mse-vs-t", "mse-vs-k", "cost-evaluations", "cost-time"]) {
        assert.isTrue(yield* fs.exists(`${out}/${name}.png`), name)
      }
    }))
})
