/**
 * `bilevel reproduce <experiment>`: one subcommand per registered experiment
 * (`src/runtime/reproduce/experiments.ts`), all with the same flags.
 */
import { Console, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { InvalidConfig } from "../../domain/errors.ts"
import * as Backend from "../Backend.ts"
import { decodeSettings, type Experiment } from "../reproduce/Experiment.ts"
import { experiments } from "../reproduce/experiments.ts"
import { parseAssignment, settingKeys } from "../settings.ts"

/** `0,1,2` → [0, 1, 2]; a repeated seed would be the same run twice, into one run directory. */
const parseSeeds = (text: string): Effect.Effect<ReadonlyArray<number>, InvalidConfig> => {
  const seeds = text.split(",").map((s) => Number(s.trim()))
  const repeated = seeds.find((s, i) => seeds.indexOf(s) !== i)
  return !seeds.every((s) => Number.isInteger(s)) || seeds.length === 0
    ? Effect.fail(new InvalidConfig({ message: `--seeds "${text}" is not a comma-separated list of integers (e.g. --seeds 0,1,2).` }))
    : repeated !== undefined
    ? Effect.fail(new InvalidConfig({ message: `--seeds "${text}" names seed ${repeated} twice: a seed's run is the same every time, so list each once.` }))
    : Effect.succeed(seeds)
}

/** The canonical command line of a reproduction, quoted in its report so it can be run again as is. */
const commandLine = (
  name: string,
  flags: { out: string; backend: string; seeds: ReadonlyArray<number>; set: ReadonlyArray<string> }
) =>
  [
    "bilevel reproduce",
    name,
    `--backend ${flags.backend}`,
    `--seeds ${flags.seeds.join(",")}`,
    ...flags.set.map((s) => `--set ${s}`),
    `--out ${flags.out}`,
    "--overwrite"
  ].join(" ")

const experimentCommand = (experiment: Experiment) =>
  Command.make(experiment.name, {
    out: Flag.String("out").pipe(
      Flag.withDescription(`directory of the runs, figures and report (default docs/reproductions/${experiment.name})`),
      Flag.optional
    ),
    backend: Flag.Literals("backend", Backend.backendNames).pipe(
      Flag.withDescription("tensor backend (see `bilevel run --help`)"),
      Flag.withDefault(experiment.defaultBackend)
    ),
    seeds: Flag.String("seeds").pipe(
      Flag.withDescription(`comma-separated seeds (default ${experiment.defaultSeeds.join(",")})`),
      Flag.optional
    ),
    set: Flag.String("set").pipe(
      Flag.withMetavar("key=value"),
      Flag.withDescription(
        "override an experiment setting (repeatable): " +
          settingKeys(experiment.settings).map((k) => `${k.key} = ${JSON.stringify(k.default)} (${k.description})`).join("; ")
      ),
      Flag.atLeast(0)
    ),
    overwrite: Flag.Boolean("overwrite").pipe(
      Flag.withDescription("replace the run records an earlier reproduction left in the directory"),
      Flag.withDefault(false)
    )
  }, (flags) =>
    Effect.gen(function*() {
      const out = Option.getOrElse(flags.out, () => `docs/reproductions/${experiment.name}`)
      const seeds = Option.isSome(flags.seeds) ? yield* parseSeeds(flags.seeds.value) : experiment.defaultSeeds
      const pairs = yield* Effect.forEach(flags.set, parseAssignment)
      const settings = yield* decodeSettings(experiment, Object.fromEntries(pairs))
      const result = yield* experiment.run({
        out,
        seeds,
        settings,
        command: commandLine(experiment.name, { out, backend: flags.backend, seeds, set: flags.set }),
        overwrite: flags.overwrite,
        progress: (line) => Console.error(`${experiment.name} ${line}`),
        handleSignals: true
      }).pipe(Effect.provide(Backend.layer(flags.backend)))
      yield* Console.log(
        [
          `${experiment.name}: report ${result.report} (${(result.wallMs / 1000).toFixed(1)} s)`,
          ...result.checks.map((c) => `  ${c.passed ? "met    " : "NOT met"}  ${c.name}: ${c.detail}`)
        ].join("\n")
      )
    })).pipe(
      Command.withDescription(experiment.description),
      Command.withExamples([
        { command: `bilevel reproduce ${experiment.name}`, description: `into docs/reproductions/${experiment.name}, as committed` },
        settingKeys(experiment.settings).some((k) => k.key === "outerSteps")
          ? {
            command: `bilevel reproduce ${experiment.name} --set outerSteps=20 --out /tmp/${experiment.name}`,
            description: "a quick, shorter version elsewhere"
          }
          : { command: `bilevel reproduce ${experiment.name} --out /tmp/${experiment.name}`, description: "elsewhere" }
      ])
    )

export const reproduceCommand = Command.make("reproduce").pipe(
  Command.withDescription(
    "Reproduce a figure or table of the papers: runs every method it needs, then writes figures (SVG, PNG) and a " +
      "Markdown report with the exact command, versions and acceptance bars into --out"
  ),
  Command.withSubcommands(experiments.map(experimentCommand)),
  Command.withExamples([
    { command: "bilevel reproduce fig1", description: "IAPTT-GM paper Fig. 1 into docs/reproductions/fig1" },
    { command: "bilevel reproduce fig3-toy --seeds 0,1 --set outerSteps=200 --out /tmp/f3", description: "a shorter Fig. 3" }
  ])
)
