/**
 * The distributed sweep: PostgreSQL and two `bilevel runner`s on loopback, a sweep of 12 runs
 * submitted with `--cluster`, one runner SIGKILLed while a run of its own is half done. Every run
 * completes exactly once (the journal has one end per run; the killed run is resumed on the other
 * runner from its checkpoint), every record is bit-identical to the same sweep run embedded, and
 * submitting the finished sweep again does no work. Skips, saying why, without PostgreSQL.
 */
import { type ChildProcess } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { afterAll, assert, describe, it } from "vitest"
import { bilevel, start } from "./support/cli.ts"
import { binaries, freePort, type Postgres, startPostgres } from "./support/postgres.ts"
import { alive, journal, plannedRuns, results, stepsRecorded } from "./support/sweep.ts"

const scratch = mkdtempSync(path.join(tmpdir(), "bilevel-cluster-"))
const spec = path.join(scratch, "sweep.yaml")
writeFileSync(spec, `
task: quadratic
methods: [rhg, ia-gm]
seeds: [0, 1, 2, 3, 4, 5]
settings: { dimX: 4, dimY: 6, outerSteps: 20, innerSteps: 10 }
backend: cpu
checkpointEvery: 5
`)

const postgres = binaries()
const cleanups: Array<() => void> = []
afterAll(() => {
  for (const cleanup of cleanups.reverse()) cleanup()
  rmSync(scratch, { recursive: true, force: true })
})

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** A runner on a free loopback port; its log (one line per run started and ended) is its stderr. */
const startRunner = async (url: string) => {
  const port = await freePort()
  const runner = start(["runner", "--cluster", url, "--host", "127.0.0.1", "--port", String(port), "--workers", "1", "--lock-expiration", "3"])
  let log = ""
  runner.child.stderr!.on("data", (chunk) => (log += chunk))
  cleanups.push(() => runner.child.kill("SIGKILL"))
  return { child: runner.child as ChildProcess, log: () => log }
}

describe.skipIf("missing" in postgres)(`bilevel sweep --cluster${"missing" in postgres ? ` (skipped: ${postgres.missing})` : ""}`, () => {
  it("two runners, one SIGKILLed mid-run: every run completes once, as the embedded sweep records it; a rerun does nothing", async () => {
    const database: Postgres = await startPostgres((postgres as { bin: string }).bin)
    cleanups.push(database.stop)
    const [a, b] = [await startRunner(database.url), await startRunner(database.url)]
    const out = path.join(scratch, "cluster")
    const submitter = start(["sweep", spec, "--out", out, "--cluster", database.url, "--json"])
    cleanups.push(() => submitter.child.kill("SIGKILL"))

    // Kill runner a once a run it started is past its first checkpoint (5) and not done (20).
    const own = () => [...a.log().matchAll(/start (\w+) /g)].map((m) => m[1]!)
    const halfDone = () =>
      existsSync(path.join(out, "sweep.json"))
        ? plannedRuns(out).find((r) => own().includes(r.id) && stepsRecorded(r.dir) > 6 && stepsRecorded(r.dir) < 20)
        : undefined
    while (halfDone() === undefined && submitter.child.exitCode === null) await sleep(20)
    const victim = halfDone()
    assert.isDefined(victim, `runner a ran nothing half-way before the sweep ended: ${a.log()}`)
    a.child.kill("SIGKILL")
    const stepsAtKill = stepsRecorded(victim!.dir)

    const submitted = await submitter.finished
    assert.strictEqual(submitted.code, 0, submitted.stderr)
    const outcomes: ReadonlyArray<{ id: string; status: string }> = JSON.parse(submitted.stdout).outcomes
    assert.strictEqual(outcomes.length, 12)
    assert.isTrue(outcomes.every((o) => o.status === "completed"), submitted.stdout)

    // Exactly once: one end per run; the victim's first worker died with its runner, without an end,
    // and runner b resumed the run from its last checkpoint.
    const entries = journal(out)
    for (const run of plannedRuns(out)) {
      assert.lengthOf(entries.filter((e) => e.id === run.id && e.event === "end"), 1, `${run.id}: ${JSON.stringify(entries)}`)
    }
    const [killedStart, ...others] = entries.filter((e) => e.id === victim!.id && e.event === "start")
    assert.isFalse(alive(killedStart!.pid), "the killed runner's worker died with it")
    assert.lengthOf(others, 1)
    const resumed = entries.find((e) => e.id === victim!.id && e.event === "end")!
    assert.strictEqual(resumed.action, "resumed")
    assert.isAtLeast(resumed.resumedFrom!, 5 * Math.floor(stepsAtKill / 5))
    assert.include(b.log(), `end   ${victim!.id} resumed completed`)

    // Bit-identical (cpu) to the same sweep on this machine's pool.
    const embedded = path.join(scratch, "embedded")
    const local = await bilevel(["sweep", spec, "--out", embedded, "--workers", "2"])
    assert.strictEqual(local.code, 0, local.stderr)
    assert.deepStrictEqual(results(out), results(embedded))

    // A rerun of the finished sweep starts no run.
    const lines = readFileSync(path.join(out, "sweep.ndjson"), "utf8")
    const again = await bilevel(["sweep", spec, "--out", out, "--cluster", database.url, "--json"])
    assert.strictEqual(again.code, 0, again.stderr)
    assert.deepStrictEqual(JSON.parse(again.stdout).outcomes.map((o: { action: string }) => o.action), Array(12).fill("skipped"))
    assert.strictEqual(readFileSync(path.join(out, "sweep.ndjson"), "utf8"), lines)
  }, 240_000)
})
