/**
 * `bilevel resume <runDir>`: continues a killed or failed run from its last checkpoint, on the
 * backend it was recorded on, and finishes its record.
 */
import { Console, Effect } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as Backend from "../Backend.ts"
import { resume } from "../run.ts"
import * as RunRecord from "../RunRecord.ts"
import { progressBar, summaryLines } from "./output.ts"
import { recordedBackend } from "./replay.ts"

export const resumeCommand = Command.make("resume", {
  dir: Argument.String("runDir").pipe(Argument.withDescription("an interrupted run directory written by `bilevel run`")),
  json: Flag.Boolean("json").pipe(Flag.withDescription("print exactly one JSON object on stdout"), Flag.withDefault(false))
}, (flags) =>
  Effect.gen(function*() {
    const info = yield* RunRecord.readInfo(flags.dir)
    const backend = yield* recordedBackend(flags.dir, info.backend)
    const progress = flags.json ? undefined : progressBar(`resume ${info.task} · ${info.method}`)
    const result = yield* resume({ dir: flags.dir, onStep: progress?.onStep, handleSignals: true }).pipe(
      Effect.ensuring(progress?.stop ?? Effect.void),
      Effect.provide(Backend.layer(backend))
    )
    if (flags.json) return yield* Console.log(JSON.stringify(result))
    yield* Console.log(
      `${result.method} on ${result.task} (${result.backend}, seed ${result.seed}): resumed at outer step ` +
        `${result.resumedFrom}, finished ${result.outerSteps} outer steps in ${(result.wallMs / 1000).toFixed(1)} s\n` +
        `${summaryLines(result.final)}\nrecord: ${result.runDir}`
    )
  })).pipe(
    Command.withDescription(
      "Continue an interrupted run from its last checkpoint (from the start when it has none): steps recorded " +
        "after the checkpoint are dropped and recomputed, exactly as the uninterrupted run would have"
    ),
    Command.withExamples([{ command: "bilevel resume runs/toy-nonconvex-iaptt-gm-2026-01-01", description: "finish a killed run" }])
  )
