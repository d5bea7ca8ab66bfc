/**
 * `bilevel sweep` on this machine: a spec's runs and their ids, bad specs named by key, a sweep on two
 * worker processes that records what single runs record, its table of mean ± std per configuration
 * and the plot's bands, and a sweep killed mid-way whose rerun resumes the interrupted runs from
 * their checkpoints and then does no work at all.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { afterAll } from "vitest"
import { Effect, Layer } from "effect"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import * as Backend from "../src/runtime/Backend.ts"
import { run } from "../src/runtime/run.ts"
import * as RunRecord from "../src/runtime/RunRecord.ts"
import { plan } from "../src/runtime/sweep/plan.ts"
import * as Spec from "../src/runtime/sweep/Spec.ts"
import { bilevel, start } from "./support/cli.ts"
import { elements, parseSvg, withClass } from "./support/svg.ts"
import { alive, journal, plannedRuns, results, stepsRecorded } from "./support/sweep.ts"

const scratch = mkdtempSync(path.join(tmpdir(), "bilevel-sweep-"))
afterAll(() => rmSync(scratch, { recursive: true, force: true }))
const file = (name: string, text: string) => {
  const at = path.join(scratch, name)
  writeFileSync(at, text)
  return at
}

const planOf = (text: string) => Spec.parse(text, "spec").pipe(Effect.flatMap((spec) => plan(spec, scratch)))

/** 2 methods × 2 seeds of a small quadratic (its data drawn from the seed), checkpointed every 5 outer steps. */
const quadraticSpec = file("quadratic.yaml", `
task: quadratic
methods: [rhg, { method: ia-gm, label: IA-GM }]
seeds: [0, 1]
settings: { dimX: 4, dimY: 6, outerSteps: 30, innerSteps: 10 }
backend: cpu
checkpointEvery: 5
`)

const sweep = (...args: Array<string>) => bilevel(["sweep", quadraticSpec, ...args], { cwd: scratch })

/** Tests that start worker processes: a few seconds each on a busy shared machine. */
const workersTimeout = 240_000

layer(Layer.merge(Backend.layer("cpu"), NodeServices.layer))("bilevel sweep", (it) => {
  it.effect("a spec expands to methods × grid × seeds, ids hashing the decoded settings and seed", () =>
    Effect.gen(function*() {
      const runs = yield* planOf(`{"task": "quadratic", "methods": ["rhg", "ia-gm"], "seeds": [0, 1, 2],
        "grid": {"innerSteps": [5, 10], "outerLr": [0.1, 0.5]}}`)
      assert.strictEqual(runs.length, 2 * 4 * 3)
      assert.strictEqual(new Set(runs.map((r) => r.id)).size, runs.length)
      assert.deepStrictEqual(runs.slice(0, 3).map((r) => [r.method, r.point, r.seed]), [
        ["rhg", { innerSteps: 5, outerLr: 0.1 }, 0],
        ["rhg", { innerSteps: 5, outerLr: 0.1 }, 1],
        ["rhg", { innerSteps: 5, outerLr: 0.1 }, 2]
      ])
      // A default written out, keys in another order, a label or a checkpoint interval: the same runs.
      const same = yield* planOf(`task: quadratic
methods: [{method: rhg, label: other}, ia-gm]
seeds: [0, 1, 2]
settings: {dimX: 20}
checkpointEvery: 3
grid: {outerLr: [0.1, 0.5], innerSteps: [5, 10]}`)
      assert.deepStrictEqual(same.map((r) => r.id).sort(), runs.map((r) => r.id).sort())
      const other = yield* planOf(`{"task": "quadratic", "methods": ["rhg"], "seeds": [0], "settings": {"dimX": 21}}`)
      assert.notInclude(runs.map((r) => r.id), other[0]!.id)
    }))

  it.effect("a bad spec is an InvalidConfig naming what is wrong, before anything runs", () =>
    Effect.gen(function*() {
      const message = (text: string) => Effect.flip(planOf(text)).pipe(Effect.map((e) => e.message))
      assert.include(yield* message(`{"task": "quadratic", "methods": ["rhg"], "seeds": [0], "seed": 1}`), "seed")
      assert.include(yield* message(`{"task": "quadratic", "methods": [], "seeds": [0]}`), "methods")
      assert.include(yield* message(`{"task": "quadratic", "methods": ["rhg"], "seeds": [-1]}`), "seeds")
      assert.include(yield* message(`{"task": "quadratic", "methods": ["rhg"], "seeds": [0], "backend": "gpu"}`), "backend")
      assert.include(yield* message(`{"task": "quadratic", "methods": ["rhg"], "seeds": [0], "grid": {"cgIters": [5]}}`), `"cgIters"`)
      assert.include(yield* message(`{"task": "quadratic", "methods": ["rgh"], "seeds": [0]}`), `method "rgh"`)
      assert.include(yield* message(`{"task": "quadratic", "methods": ["rhg", "rhg"], "seeds": [0]}`), "same run")
      assert.include(yield* message(`task: [unclosed`), "not valid JSON or YAML")
    }))

  it.effect("a cluster database that cannot be reached is named (its password masked) with what to do", () =>
    Effect.gen(function*() {
      const finished = yield* Effect.promise(() => sweep("--out", path.join(scratch, "unreachable"), "--cluster", "postgres://bilevel:secret@127.0.0.1:1/bilevel"))
      assert.notStrictEqual(finished.code, 0)
      assert.include(finished.stderr, "ClusterUnavailable: The cluster database postgres://bilevel:***@127.0.0.1:1/bilevel cannot be used")
      assert.include(finished.stderr, "PostgreSQL is running")
      assert.notInclude(finished.stderr, "secret")
    }))

  it.effect("two workers record what one `run` per configuration records; --dry-run lists the runs", () =>
    Effect.gen(function*() {
      const out = path.join(scratch, "two-workers")
      const dry = yield* Effect.promise(() => sweep("--out", out, "--dry-run"))
      assert.strictEqual(dry.code, 0, dry.stderr)
      assert.include(dry.stdout, "4 runs")
      assert.strictEqual(dry.stdout.match(/→ run/g)?.length, 4)

      const finished = yield* Effect.promise(() => sweep("--out", out, "--workers", "2", "--json"))
      assert.strictEqual(finished.code, 0, finished.stderr)
      const { outcomes } = JSON.parse(finished.stdout)
      assert.deepStrictEqual(outcomes.map((o: { action: string; status: string }) => [o.action, o.status]), Array(4).fill(["ran", "completed"]))
      // Two runs were in flight at once, in two processes.
      const entries = journal(out)
      assert.strictEqual(new Set(entries.map((e) => e.pid)).size, 4)

      const planned = plannedRuns(out)[3]!
      assert.strictEqual(planned.label, "IA-GM")
      const single = yield* run({ task: planned.task, method: planned.method, seed: planned.seed, settings: planned.settings, out: path.join(scratch, "single") })
      const [swept, alone] = [yield* RunRecord.read(planned.dir), yield* RunRecord.read(single.runDir)]
      assert.deepStrictEqual(swept.steps.map(({ ms: _, ...s }) => s), alone.steps.map(({ ms: _, ...s }) => s))
      assert.deepStrictEqual(swept.summary?.final, alone.summary?.final)
      assert.strictEqual(swept.info.label, "IA-GM")
    }), workersTimeout)

  it.effect("a run that diverges is a failed outcome, the sweep goes on, and a rerun leaves it failed", () =>
    Effect.gen(function*() {
      const spec = file("diverging.yaml", `
task: quadratic
methods: [rhg]
seeds: [0]
settings: { dimX: 4, dimY: 6, outerSteps: 30, innerSteps: 10 }
grid: { outerLr: [0.5, 200] }
`)
      const out = path.join(scratch, "diverging")
      const outcomes = (finished: { code: number | null; stdout: string; stderr: string }) => {
        assert.strictEqual(finished.code, 0, finished.stderr)
        return JSON.parse(finished.stdout).outcomes.map((o: { action: string; status: string; error?: string }) => [o.action, o.status, o.error?.split(":")[0]])
      }
      const first = yield* Effect.promise(() => bilevel(["sweep", spec, "--out", out, "--json"], { cwd: scratch }))
      assert.deepStrictEqual(outcomes(first), [["ran", "completed", undefined], ["ran", "failed", "Diverged"]])
      const again = yield* Effect.promise(() => bilevel(["sweep", spec, "--out", out, "--json"], { cwd: scratch }))
      assert.deepStrictEqual(outcomes(again), [["skipped", "completed", undefined], ["skipped", "failed", "Diverged"]])
      const dry = yield* Effect.promise(() => bilevel(["sweep", spec, "--out", out, "--dry-run"], { cwd: scratch }))
      assert.match(dry.stdout, /outerLr":200\}  → skip \(failed\)/)
    }), workersTimeout)

  it.effect("3 methods × 3 seeds: the sweep prints mean ± std of the spec's metrics per method; plot draws a band per method", () =>
    Effect.gen(function*() {
      const methods = ["rhg", "ia-gm", "iaptt-gm"]
      const spec = file("toy-llc.yaml", `
task: toy-llc
methods: [${methods.join(", ")}]
seeds: [0, 1, 2]
settings: { n: 3, outerSteps: 4, innerSteps: 5 }
metrics: [F, xError]
`)
      const out = path.join(scratch, "toy-llc")
      const finished = yield* Effect.promise(() => bilevel(["sweep", spec, "--out", out, "--workers", "2"], { cwd: scratch }))
      assert.strictEqual(finished.code, 0, finished.stderr)
      const table = finished.stdout.split("\n").filter((line) => line.startsWith("|"))
      const cells = (line: string) => line.slice(2, -2).split(" | ").map((c) => c.trim())
      const header = cells(table[0]!)
      assert.deepStrictEqual(header.slice(0, 7), ["task", "method", "n", "seeds", "status", "F", "xError"])
      assert.lengthOf(table, 2 + methods.length)
      const records = plannedRuns(out)
      for (const [i, method] of methods.entries()) {
        const row = cells(table[2 + i]!)
        assert.deepStrictEqual(row.slice(0, 5), ["toy-llc", method, "3", "0 1 2", "3 completed"])
        for (const metric of ["F", "xError"]) {
          const values = records.filter((r) => r.method === method).map((r) =>
            JSON.parse(readFileSync(path.join(r.dir, "summary.json"), "utf8")).final[metric] as number
          )
          const mean = values.reduce((a, b) => a + b, 0) / values.length
          const std = Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (values.length - 1))
          assert.isAbove(std, 0, "the seeds draw different initial points")
          const shown = (v: number) => String(Number(v.toPrecision(4)))
          assert.strictEqual(row[header.indexOf(metric)], `${shown(mean)} ± ${shown(std)}`, `${method} ${metric}`)
        }
      }

      const svg = path.join(scratch, "toy-llc.svg")
      const plotted = yield* Effect.promise(() => bilevel(["plot", ...records.map((r) => r.dir), "--metric", "F", "--out", svg]))
      assert.strictEqual(plotted.code, 0, plotted.stderr)
      const doc = parseSvg(readFileSync(svg, "utf8"))
      assert.lengthOf(withClass(doc, "g", "mark-area").flatMap((g) => elements(g, "path")), methods.length)
      const legend = withClass(doc, "g", "role-legend-label").flatMap((g) => elements(g, "text")).map((t) => t["#text"])
      assert.deepStrictEqual(legend, methods.map((m) => `${m} (n = 3)`))
    }), workersTimeout)

  it.effect("a sweep killed mid-way resumes its interrupted runs from their checkpoints; then a rerun does nothing", () =>
    Effect.gen(function*() {
      const reference = path.join(scratch, "uninterrupted")
      const killed = path.join(scratch, "killed")
      const atKill = yield* Effect.promise(async () => {
        const { child, finished } = start(["sweep", quadraticSpec, "--out", killed, "--workers", "2"], { cwd: scratch })
        const recorded = () => existsSync(path.join(killed, "sweep.json")) ? plannedRuns(killed).map((r) => stepsRecorded(r.dir)) : []
        while (child.exitCode === null && !recorded().some((n) => n > 6 && n < 30)) await new Promise((r) => setTimeout(r, 20))
        child.kill("SIGKILL")
        const counts = new Map(plannedRuns(killed).map((r) => [r.id, stepsRecorded(r.dir)]))
        await finished
        // Its workers die with it (they watch the channel to it), leaving records to resume.
        while (journal(killed).some((e) => alive(e.pid))) await new Promise((r) => setTimeout(r, 20))
        return counts
      })
      const interrupted = journal(killed).filter((e) => e.event === "start" && !journal(killed).some((f) => f.event === "end" && f.id === e.id))
      assert.isAbove(interrupted.length, 0, "a run was in flight when the sweep was killed")

      const rerun = yield* Effect.promise(() => sweep("--out", killed, "--workers", "2", "--json"))
      assert.strictEqual(rerun.code, 0, rerun.stderr)
      const outcomes: ReadonlyArray<{ id: string; action: string; resumedFrom?: number }> = JSON.parse(rerun.stdout).outcomes
      for (const entry of interrupted) {
        const outcome = outcomes.find((o) => o.id === entry.id)!
        assert.strictEqual(outcome.action, "resumed")
        // From its last checkpoint (every 5 steps), not from the start.
        assert.isAtLeast(outcome.resumedFrom!, 5 * Math.floor(atKill.get(entry.id)! / 5))
      }
      assert.isTrue(outcomes.some((o) => o.resumedFrom !== undefined && o.resumedFrom >= 5))

      const uninterrupted = yield* Effect.promise(() => sweep("--out", reference, "--workers", "2"))
      assert.strictEqual(uninterrupted.code, 0, uninterrupted.stderr)
      assert.deepStrictEqual(results(killed), results(reference))

      const lines = journal(killed).length
      const again = yield* Effect.promise(() => sweep("--out", killed, "--json"))
      assert.strictEqual(again.code, 0, again.stderr)
      assert.deepStrictEqual(JSON.parse(again.stdout).outcomes.map((o: { action: string }) => o.action), Array(4).fill("skipped"))
      assert.strictEqual(journal(killed).length, lines, "no run started")
    }), workersTimeout)
})
