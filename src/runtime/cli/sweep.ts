/**
 * `bilevel sweep <spec>`: every run of a sweep spec (methods × grid × seeds), on this machine's worker
 * pool; a rerun skips what is recorded and resumes what was interrupted.
 */
import { Console, Effect, FileSystem, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as path from "node:path"
import { RunRecordError } from "../../domain/errors.ts"
import { compareConfigurations } from "../compare.ts"
import * as RunRecord from "../RunRecord.ts"
import { checkDatabase } from "../sweep/cluster.ts"
import { runDistributed } from "../sweep/distributed.ts"
import { runEmbedded } from "../sweep/embedded.ts"
import type { Outcome } from "../sweep/execute.ts"
import { runState } from "../sweep/execute.ts"
import { manifestFile, plan, type PlannedRun } from "../sweep/plan.ts"
import { defaultWorkers } from "../sweep/pool.ts"
import * as Spec from "../sweep/Spec.ts"
import { databaseFlag } from "./runner.ts"
import { sweepProgress } from "./sweepProgress.ts"

const describeRun = (run: PlannedRun) =>
  `${run.id}  ${run.label} seed ${run.seed}${Object.keys(run.point).length > 0 ? ` ${JSON.stringify(run.point)}` : ""}`

const counts = (outcomes: ReadonlyArray<Outcome>) => {
  const count = (f: (o: Outcome) => boolean) => outcomes.filter(f).length
  return `${count((o) => o.action === "ran")} ran, ${count((o) => o.action === "resumed")} resumed, ` +
    `${count((o) => o.action === "skipped")} already recorded; ${count((o) => o.status === "failed")} failed`
}

export const sweepCommand = Command.make("sweep", {
  spec: Argument.String("spec").pipe(Argument.withDescription("sweep spec, JSON or YAML: task, methods, seeds, settings, grid, backend, metrics")),
  out: Flag.String("out").pipe(Flag.withDescription("directory of the sweep's run directories (default sweeps/<spec name>)"), Flag.optional),
  dryRun: Flag.Boolean("dry-run").pipe(Flag.withDescription("list the runs (id, method, seed, grid point) and what a sweep would do with each; run nothing"), Flag.withDefault(false)),
  workers: Flag.Int("workers").pipe(
    Flag.withDescription("worker processes, one run each, at once (default: the cores)"),
    Flag.filter((n) => n >= 1, (n) => `--workers must be at least 1, got ${n}`),
    Flag.optional
  ),
  cluster: databaseFlag.pipe(
    Flag.withDescription("submit the runs to the Effect Cluster whose state is in this PostgreSQL database (start `bilevel runner`s on it) instead of running them here"),
    Flag.optional
  ),
  json: Flag.Boolean("json").pipe(Flag.withDescription("print exactly one JSON object on stdout"), Flag.withDefault(false))
}, (flags) =>
  Effect.gen(function*() {
    const spec = yield* Spec.load(flags.spec)
    const out = path.resolve(Option.getOrElse(flags.out, () => path.join("sweeps", path.parse(flags.spec).name)))
    const runs = yield* plan(spec, out)
    if (flags.dryRun) {
      const states = yield* Effect.forEach(runs, (run) => runState(run.dir))
      const todo = { absent: "run", unfinished: "resume", completed: "skip (completed)", failed: "skip (failed)" } as const
      if (flags.json) return yield* Console.log(JSON.stringify({ out, runs: runs.map((run, i) => ({ ...run, state: states[i] })) }))
      return yield* Console.log(
        `${runs.length} runs in ${out}\n` + runs.map((run, i) => `${describeRun(run)}  → ${todo[states[i]!]}`).join("\n")
      )
    }
    const fs = yield* FileSystem.FileSystem
    yield* fs.makeDirectory(out, { recursive: true }).pipe(
      Effect.mapError((e) => new RunRecordError({ path: out, problem: `cannot be created: ${e.message}. Choose a writable --out directory` }))
    )
    yield* RunRecord.writeAtomically(path.join(out, manifestFile), JSON.stringify({ spec, runs }, null, 2) + "\n")
    if (Option.isSome(flags.cluster)) yield* checkDatabase(flags.cluster.value)
    const workers = Option.getOrElse(flags.workers, defaultWorkers)
    const outcomes = yield* Effect.gen(function*() {
      const done = yield* Effect.forEach(runs, (run) => runState(run.dir))
      const progress = flags.json ? undefined : sweepProgress(runs.length, done.filter((s) => s === "completed" || s === "failed").length)
      const outcomes = Option.isSome(flags.cluster)
        ? runDistributed(runs, flags.cluster.value, progress)
        : runEmbedded(runs, { workers, progress })
      return yield* outcomes.pipe(Effect.ensuring(Effect.sync(() => progress?.stop())))
    })
    if (flags.json) return yield* Console.log(JSON.stringify({ out, outcomes }))
    const failures = outcomes.filter((o) => o.status === "failed")
    // The spec's metrics over the seeds of each configuration, from the records of the runs that have one.
    const records = yield* Effect.forEach(outcomes.filter((o) => o.outerSteps > 0), (o) => RunRecord.read(o.dir))
    const relative = path.relative(process.cwd(), out)
    const shown = relative === "" ? "." : relative.startsWith("..") ? out : relative
    yield* Console.log(
      `${runs.length} runs in ${out}: ${counts(outcomes)}` +
        failures.map((o) => `\n  failed: ${o.dir}: ${o.error ?? "no message"}`).join("") +
        (records.length > 0 ? `\n\n${compareConfigurations(records, { format: "markdown", ...(spec.metrics === undefined ? {} : { metrics: spec.metrics }) })}` : "") +
        `\nper run: bilevel compare ${shown}/*/ --group run · figures: bilevel plot ${shown}/*/ --out sweep.svg`
    )
  })).pipe(
    Command.withDescription(
      "Run a sweep (methods × settings grid × seeds) on a pool of worker processes, one run each; run ids hash the " +
        "resolved settings and seed, so a rerun skips recorded runs and resumes interrupted ones from their checkpoint"
    ),
    Command.withExamples([
      { command: "bilevel sweep examples/sweep-toy.yaml --dry-run", description: "list the runs of a spec" },
      { command: "bilevel sweep examples/sweep-toy.yaml --workers 2 --out sweeps/toy", description: "run them, two at once" }
    ])
  )
