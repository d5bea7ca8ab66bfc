/**
 * `bilevel replay <runDir>`: re-runs a recorded run and compares its steps with the record; exits 1
 * with the first differing step, field and values when they differ.
 */
import { Console, Effect, Option, Schema } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { RunRecordError } from "../../domain/errors.ts"
import * as Backend from "../Backend.ts"
import { assertIdentical, replay, type ReplayReport, timingFields } from "../replay.ts"
import * as RunRecord from "../RunRecord.ts"
import { progressBar } from "./output.ts"

/** The backend a record names, as a backend layer's name (or a typed error for a corrupt run.json). */
export const recordedBackend = (dir: string, backend: string) =>
  Schema.decodeUnknownEffect(Backend.BackendName)(backend).pipe(
    Effect.mapError(() =>
      new RunRecordError({
        path: `${dir}/${RunRecord.files.info}`,
        problem: `names the backend "${backend}", which is none of ${Backend.backendNames.join(", ")}`
      })
    )
  )

const describe = (report: ReplayReport): string => {
  const what = `${report.method} on ${report.task} (seed ${report.seed}), recorded on ${report.recordedBackend}, ` +
    `replayed on ${report.backend}`
  const rule = report.tolerance === 0 ? "bit for bit" : `within relative tolerance ${report.tolerance}`
  const versions = report.versionChanges
    ? `\n  versions changed since the record: ${
      Object.entries(report.versionChanges).map(([name, v]) => `${name} ${v.recorded} → ${v.current ?? "absent"}`).join(", ")
    }`
    : ""
  const kept = report.replayDir ? `\n  replay record: ${report.replayDir}` : ""
  return report.identical
    ? `identical: ${report.replayedSteps} outer steps of ${what} match ${rule} (ignoring ${report.ignored.join(", ")})${versions}${kept}`
    : `different: ${what}; ${report.recordedSteps} recorded and ${report.replayedSteps} replayed steps${versions}${kept}`
}

export const replayCommand = Command.make("replay", {
  dir: Argument.String("runDir").pipe(Argument.withDescription("a run directory written by `bilevel run`")),
  backend: Flag.Literals("backend", Backend.backendNames).pipe(
    Flag.withDescription("backend to replay on (default: the recorded one; only the same backend can be bit-identical)"),
    Flag.optional
  ),
  tolerance: Flag.Finite("tolerance").pipe(
    Flag.withDescription("relative difference accepted between numbers (default 0: bit-identical, as cpu runs are)"),
    Flag.filter((t) => t >= 0, (t) => `--tolerance must be ≥ 0, got ${t}`),
    Flag.withDefault(0)
  ),
  ignore: Flag.String("ignore").pipe(
    Flag.withDescription(`field name to skip besides the timing fields ${timingFields.join(", ")} (repeatable)`),
    Flag.atLeast(0)
  ),
  out: Flag.String("out").pipe(Flag.withDescription("keep the replay's own record in this new directory"), Flag.optional),
  json: Flag.Boolean("json").pipe(Flag.withDescription("print exactly one JSON report on stdout"), Flag.withDefault(false))
}, (flags) =>
  Effect.gen(function*() {
    const info = yield* RunRecord.readInfo(flags.dir)
    const backend = Option.isSome(flags.backend) ? flags.backend.value : yield* recordedBackend(flags.dir, info.backend)
    const progress = flags.json ? undefined : progressBar(`replay ${info.task} · ${info.method}`)
    const report = yield* replay({
      dir: flags.dir,
      out: Option.getOrUndefined(flags.out),
      ignore: flags.ignore,
      tolerance: flags.tolerance,
      onStep: progress?.onStep
    }).pipe(Effect.ensuring(progress?.stop ?? Effect.void), Effect.provide(Backend.layer(backend)))
    // With --json a difference is printed once, as the ReplayMismatch error object.
    if (!flags.json || report.identical) yield* Console.log(flags.json ? JSON.stringify(report) : describe(report))
    yield* assertIdentical(report)
  })).pipe(
    Command.withDescription(
      "Re-run a recorded run (task, method, seed, config, backend from its run.json) and compare every step " +
        "with the record; exit 1 at the first differing step"
    ),
    Command.withExamples([
      { command: "bilevel replay runs/toy-nonconvex-iaptt-gm-2026-01-01", description: "replay on the recorded backend" },
      { command: "bilevel replay runs/x --backend wasm --tolerance 1e-5 --json", description: "another backend, approximately" }
    ])
  )
