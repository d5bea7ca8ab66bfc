/**
 * `bilevel evaluate <runDir>`: a run's last checkpoint on its task's held-out evaluation, beside its
 * initial point, on the backend it was recorded on.
 */
import { Console, Effect } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as Backend from "../Backend.ts"
import { evaluate } from "../evaluate.ts"
import * as RunRecord from "../RunRecord.ts"
import { table } from "../reproduce/report.ts"
import { recordedBackend } from "./replay.ts"

const show = (row: Record<string, number>, key: string) =>
  row[key] === undefined ? "–" : key.includes("Accuracy") ? `${(100 * row[key]!).toFixed(2)}%` : String(Number(row[key]!.toPrecision(4)))

export const evaluateCommand = Command.make("evaluate", {
  dir: Argument.String("runDir").pipe(Argument.withDescription("a run directory with a checkpoint (`bilevel run --checkpoint-every N`)")),
  baseline: Flag.Boolean("baseline").pipe(
    Flag.withDescription("also evaluate the run's initial point (the random backbone); --baseline=false skips it"),
    Flag.withDefault(true)
  ),
  json: Flag.Boolean("json").pipe(Flag.withDescription("print exactly one JSON object on stdout"), Flag.withDefault(false))
}, (flags) =>
  Effect.gen(function*() {
    const info = yield* RunRecord.readInfo(flags.dir)
    const backend = yield* recordedBackend(flags.dir, info.backend)
    const result = yield* evaluate(flags.dir, { baseline: flags.baseline }).pipe(Effect.provide(Backend.layer(backend)))
    if (flags.json) return yield* Console.log(JSON.stringify(result))
    const keys = Object.keys(result.trained)
    yield* Console.log(
      `${result.method} on ${result.task}, ${flags.dir} (${(result.wallMs / 1000).toFixed(1)} s):\n` +
        table(["state", ...keys], [
          [`trained (checkpoint at outer step ${result.step})`, ...keys.map((k) => show(result.trained, k))],
          ...(result.initial === undefined ? [] : [["initial (random backbone)", ...keys.map((k) => show(result.initial!, k))]])
        ])
    )
  })).pipe(
    Command.withDescription(
      "Evaluate a run's last checkpoint on its task's held-out data (few-shot: accuracy ± 95% CI over test episodes; " +
        "hyper-cleaning: the net trained to convergence at the learned weights, and the cleaning scores), " +
        "beside the run's initial point; also written to <runDir>/evaluation.json"
    ),
    Command.withExamples([
      { command: "bilevel evaluate runs/fewshot-iaptt-gm-2026-01-01", description: "test-episode accuracy of a trained backbone" },
      { command: "bilevel evaluate runs/hyper-cleaning-rhg --baseline=false", description: "converged-training test accuracy at the last checkpoint" }
    ])
  )
