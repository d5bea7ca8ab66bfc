/**
 * `bilevel export <runDir>`: the recorded steps of a run as CSV or JSON, at full precision, on
 * stdout or into a file.
 */
import { Console, Effect, FileSystem, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { RunRecordError } from "../../domain/errors.ts"
import { exportSteps } from "../export.ts"
import * as RunRecord from "../RunRecord.ts"

export const exportCommand = Command.make("export", {
  dir: Argument.String("runDir").pipe(Argument.withDescription("a run directory written by `bilevel run`")),
  format: Flag.Literals("format", ["csv", "json"]).pipe(
    Flag.withDescription("csv: one column per step field, nested ones dotted (cost.hvps); json: the array of step records"),
    Flag.withDefault("csv" as const)
  ),
  out: Flag.String("out").pipe(Flag.withDescription("file to write (default: stdout)"), Flag.optional)
}, (flags) =>
  Effect.gen(function*() {
    const steps = yield* RunRecord.readSteps(flags.dir)
    const text = exportSteps(steps, flags.format)
    if (Option.isNone(flags.out)) return yield* Console.log(text.replace(/\r?\n$/, ""))
    const fs = yield* FileSystem.FileSystem
    const out = flags.out.value
    yield* fs.writeFileString(out, text).pipe(
      Effect.mapError((e) => new RunRecordError({ path: out, problem: `cannot be written: ${e.message}` }))
    )
    yield* Console.error(`wrote ${steps.length} steps to ${out}`)
  })).pipe(
    Command.withDescription(
      "Write a run's recorded steps (F, k̄, hypergradient norm, time, cost, task metrics) as CSV or JSON at full " +
        "precision; its learned x, z and y are the .npy files in the run directory"
    ),
    Command.withExamples([
      { command: "bilevel export runs/toy --format csv > toy.csv", description: "a table for pandas, R or a spreadsheet" },
      { command: "bilevel export runs/toy --format json --out toy.json", description: "the step records as one JSON array" }
    ])
  )
