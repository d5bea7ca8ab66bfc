/**
 * The `bilevel` command line. It is the only module that knows about argv, files and terminals;
 * every subcommand is a thin shell over an Effect program of `src/runtime`.
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Console, Effect, FileSystem, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { InvalidConfig } from "../../domain/errors.ts"
import { methods } from "../../solvers/methods.ts"
import { tasks } from "../../tasks/registry.ts"
import { backendLayer } from "../autoBackend.ts"
import * as Backend from "../Backend.ts"
import { hasRepeats } from "../aggregate.ts"
import { compareConfigurations, compareRuns } from "../compare.ts"
import { defaultStep, gradcheck } from "../gradcheck.ts"
import { type Scale, scales, writePlot } from "../plot.ts"
import { defaultCheckpointEvery, run } from "../run.ts"
import * as RunRecord from "../RunRecord.ts"
import { findMethod, findTask, jsonSchema, parseAssignment, settingKeys } from "../settings.ts"
import { progressBar, summaryLines } from "./output.ts"
import { reproduceCommand } from "./reproduce.ts"
import { replayCommand } from "./replay.ts"
import { resumeCommand } from "./resume.ts"
import { runnerCommand } from "./runner.ts"
import { sweepCommand } from "./sweep.ts"
import { evaluateCommand } from "./evaluate.ts"

const taskArgument = Argument.String("task").pipe(
  Argument.withDescription(`the problem to solve: ${tasks.map((t) => t.name).join(", ")} (see \`bilevel tasks\`)`)
)
const methodFlag = Flag.String("method").pipe(
  Flag.withAlias("m"),
  Flag.withDescription(`the solver preset: ${methods.map((m) => m.name).join(", ")} (see \`bilevel methods\`)`)
)
const seedFlag = Flag.Int("seed").pipe(
  Flag.withDescription("seed of every random choice (inits, data splits, minibatches); runs are a function of it"),
  Flag.withDefault(0)
)
const backendFlag = (fallback: Backend.BackendChoice) =>
  Flag.Literals("backend", Backend.backendChoices).pipe(
    Flag.withDescription(
      "tensor backend: cpu (deterministic reference), wasm (XNNPACK SIMD, fastest on CPU; on as many threads as " +
        "cores, up to 4, or BILEVEL_WASM_THREADS), tensorflow / " +
        "tensorflow-gpu (@tensorflow/tfjs-node[-gpu], installed separately), webgpu (experimental), " +
        `auto (cpu when the LL variable has fewer than ${Backend.autoThreshold} elements, wasm otherwise; the record names the one chosen)`
    ),
    Flag.withDefault(fallback)
  )
const setFlag = Flag.String("set").pipe(
  Flag.withMetavar("key=value"),
  Flag.withDescription("override one setting, e.g. --set innerSteps=100 (repeatable; `bilevel tasks` and `bilevel methods` list the keys)"),
  Flag.atLeast(0)
)
const configFlag = Flag.String("config").pipe(
  Flag.withDescription("a JSON file of settings {key: value}; --set overrides it"),
  Flag.optional
)
const jsonFlag = Flag.Boolean("json").pipe(Flag.withDescription("print exactly one JSON object on stdout"), Flag.withDefault(false))

/** Settings from --config (a JSON object) merged with --set pairs. */
const gatherSettings = Effect.fnUntraced(function*(config: Option.Option<string>, sets: ReadonlyArray<string>) {
  const fs = yield* FileSystem.FileSystem
  const fromFile: Record<string, unknown> = Option.isSome(config)
    ? yield* fs.readFileString(config.value).pipe(
      Effect.mapError(() => new InvalidConfig({ message: `Config file ${config.value} cannot be read.` })),
      Effect.flatMap((text) =>
        Effect.try({
          try: () => JSON.parse(text) as unknown,
          catch: (e) => new InvalidConfig({ message: `Config file ${config.value} is not valid JSON: ${(e as Error).message}` })
        })
      ),
      Effect.flatMap((value) =>
        typeof value === "object" && value !== null && !Array.isArray(value)
          ? Effect.succeed(value as Record<string, unknown>)
          : Effect.fail(new InvalidConfig({ message: `Config file ${config.value} must hold a JSON object of settings, e.g. {"innerSteps": 40}.` }))
      )
    )
    : {}
  const pairs = yield* Effect.forEach(sets, parseAssignment)
  return { ...fromFile, ...Object.fromEntries(pairs) }
})

const runCommand = Command.make("run", {
  task: taskArgument,
  method: methodFlag,
  seed: seedFlag,
  backend: backendFlag(Backend.defaultBackend),
  set: setFlag,
  config: configFlag,
  out: Flag.String("out").pipe(Flag.withDescription("run directory to create (default runs/<task>-<method>-<time>)"), Flag.optional),
  label: Flag.String("label").pipe(Flag.withDescription("legend name of this run in plots and tables (default: the method)"), Flag.optional),
  checkpointEvery: Flag.Int("checkpoint-every").pipe(
    Flag.withDescription("checkpoint the UL state every N outer steps into the run directory, for `bilevel resume` (0: never)"),
    Flag.filter((n) => n >= 0, (n) => `--checkpoint-every must be 0 (never) or a positive number of outer steps, got ${n}`),
    Flag.withDefault(defaultCheckpointEvery)
  ),
  json: jsonFlag
}, (flags) =>
  Effect.gen(function*() {
    const settings = yield* gatherSettings(flags.config, flags.set)
    const progress = flags.json ? undefined : progressBar(`${flags.task} · ${flags.method}`)
    const result = yield* run({
      task: flags.task,
      method: flags.method,
      seed: flags.seed,
      settings,
      out: Option.getOrUndefined(flags.out),
      label: Option.getOrUndefined(flags.label),
      onStep: progress?.onStep,
      checkpointEvery: flags.checkpointEvery
    }).pipe(
      Effect.ensuring(progress?.stop ?? Effect.void),
      Effect.provide(backendLayer(flags.backend, { task: flags.task, method: flags.method, seed: flags.seed, settings }))
    )
    if (flags.json) return yield* Console.log(JSON.stringify(result))
    yield* Console.log(
      `${result.method} on ${result.task} (${result.backend}, seed ${result.seed}): ${result.outerSteps} outer steps in ` +
        `${(result.wallMs / 1000).toFixed(1)} s\n${summaryLines(result.final)}\nrecord: ${result.runDir}`
    )
  })).pipe(
    Command.withDescription("Solve a bilevel task with a method, recording every outer step in a run directory"),
    Command.withExamples([
      { command: "bilevel run toy-nonconvex --method iaptt-gm", description: "IAPTT-GM on the paper's non-convex toy (Eq. 10)" },
      { command: "bilevel run toy-nonconvex -m rhg --set x0=5 --set y0=1 --json", description: "RHG from another init, JSON summary" },
      { command: "bilevel run quadratic -m ls --set cgIters=50 --backend cpu", description: "LS on the closed-form quadratic" }
    ])
  )

const describeSettings = (schema: Parameters<typeof settingKeys>[0]) =>
  settingKeys(schema).map((k) => `      ${k.key} = ${JSON.stringify(k.default)}  ${k.description}`).join("\n")

const methodsCommand = Command.make("methods", {}, () =>
  Console.log(methods.map((m) => {
    const keys = describeSettings(m.settings)
    return `${m.name.padEnd(12)} ${m.description}${keys ? `\n${keys}` : ""}`
  }).join("\n"))).pipe(Command.withDescription("List the solver presets, one line each, with the settings each adds"))

const tasksCommand = Command.make("tasks", {}, () =>
  Console.log(tasks.map((t) => `${t.name.padEnd(14)} ${t.description}\n${describeSettings(t.settings)}`).join("\n"))).pipe(
    Command.withDescription("List the tasks, one line each, with their settings and defaults")
  )

const gradcheckCommand = Command.make("gradcheck", {
  task: taskArgument,
  method: methodFlag,
  seed: seedFlag,
  backend: backendFlag("cpu"),
  set: setFlag,
  config: configFlag,
  step: Flag.Finite("step").pipe(
    Flag.withDescription(
      "finite-difference step: the largest coordinate move, relative to the size of the coordinates moved; " +
        "float32 rounding dominates below ≈ 1e-2 and nonlinearity above ≈ 1e-1"
    ),
    Flag.filter((h) => h > 0, (h) => `--step must be positive, got ${h}`),
    Flag.withDefault(defaultStep)
  ),
  directions: Flag.Int("directions").pipe(
    Flag.withDescription("compare along this many random directions when x (and z) have more than 4× as many coordinates"),
    Flag.filter((n) => n > 0, (n) => `--directions must be positive, got ${n}`),
    Flag.withDefault(16)
  ),
  json: jsonFlag
}, (flags) =>
  Effect.gen(function*() {
    const settings = yield* gatherSettings(flags.config, flags.set)
    const result = yield* gradcheck({
      task: flags.task,
      method: flags.method,
      seed: flags.seed,
      settings,
      step: flags.step,
      directions: flags.directions
    }).pipe(
      Effect.provide(backendLayer(flags.backend, { task: flags.task, method: flags.method, seed: flags.seed, settings }))
    )
    const { expected, hypergradient, ...summary } = result
    if (flags.json) return yield* Console.log(JSON.stringify(summary))
    yield* Console.log(
      `${result.method} on ${result.task}: relative error ${result.relError.toExponential(3)} against the ` +
        `${result.reference} (${result.compared})\n  cost: ${JSON.stringify(result.cost)}\n` +
        `  hypergradient (first 5): ${hypergradient.slice(0, 5).map((v) => v.toPrecision(6)).join(", ")}\n` +
        `  reference     (first 5): ${expected.slice(0, 5).map((v) => v.toPrecision(6)).join(", ")}` +
        (result.note ? `\n  note: ${result.note}` : "")
    )
  })).pipe(
    Command.withDescription(
      "Check a method's hypergradient at the task's initial point: against the closed form where the task has one, " +
        "otherwise against central finite differences of the same truncated pipeline"
    ),
    Command.withExamples([
      { command: "bilevel gradcheck quadratic --method ls --set cgIters=60", description: "LS against the closed form" },
      { command: "bilevel gradcheck toy-nonconvex --method iaptt-gm --json", description: "PTT against finite differences" }
    ])
  )

const schemaCommand = Command.make("schema", {
  task: taskArgument,
  method: methodFlag.pipe(Flag.optional)
}, (flags) =>
  Effect.gen(function*() {
    const task = yield* findTask(flags.task)
    const method = Option.isSome(flags.method) ? yield* findMethod(flags.method.value) : undefined
    const document = jsonSchema(task.settings) as { schema: { properties?: Record<string, unknown> } }
    const properties = {
      ...document.schema.properties,
      ...(method ? (jsonSchema(method.settings) as typeof document).schema.properties : {})
    }
    yield* Console.log(JSON.stringify({
      $schema: "https://json-schema.org/draft/2020-12/schema",
      title: `${task.name}${method ? ` · ${method.name}` : ""} settings`,
      type: "object",
      properties,
      additionalProperties: false
    }, null, 2))
  })).pipe(Command.withDescription("Print the JSON Schema of a task's (and a method's) settings, for --config files and editors"))

const runDirs = Argument.String("runDir").pipe(Argument.withDescription("run directories written by `bilevel run`"), Argument.variadic({ min: 1 }))

const groupFlag = Flag.Literals("group", ["auto", "configuration", "run"]).pipe(
  Flag.withDescription(
    "configuration: one row or line per task, method and settings, as mean ± std over its runs (seeds); run: one " +
      "per run; auto (default): by configuration when some configuration has more than one run"
  ),
  Flag.withDefault("auto" as const)
)

const plotCommand = Command.make("plot", {
  runs: runDirs,
  metric: Flag.String("metric").pipe(
    Flag.withDescription("recorded metric to plot, one panel each (repeatable; default F); `name:log` or `name:symlog` sets that panel's y scale"),
    Flag.atLeast(0)
  ),
  out: Flag.String("out").pipe(Flag.withDescription("output file, .svg or .png")),
  logY: Flag.Boolean("log-y").pipe(Flag.withDescription("logarithmic y axes (values ≤ 0 are dropped, and each panel says how many)"), Flag.withDefault(false)),
  x: Flag.Literals("x", ["step", "time", "innerSteps", "reverseSteps", "hvps"]).pipe(
    Flag.withDescription("x axis: outer step (default), wall time, or LL steps, reverse steps or HVPs so far"),
    Flag.withDefault("step" as const)
  ),
  group: groupFlag,
  legend: Flag.Literals("legend", ["varied", "label"]).pipe(
    Flag.withDescription("legend names: what differs between the series (default), or the runs' --label"),
    Flag.withDefault("varied" as const)
  ),
  title: Flag.String("title").pipe(Flag.optional)
}, (flags) =>
  Effect.gen(function*() {
    const runs = yield* Effect.forEach(flags.runs, RunRecord.read)
    const title = Option.getOrUndefined(flags.title)
    const metrics = yield* Effect.forEach(flags.metric.length > 0 ? flags.metric : ["F"], metricArgument)
    yield* writePlot(runs, {
      metrics: metrics.map(([metric]) => metric),
      panels: Object.fromEntries(metrics.flatMap(([metric, scale]) => scale === undefined ? [] : [[metric, { scale }]])),
      scale: flags.logY ? "log" : "linear",
      x: flags.x,
      group: flags.group,
      legend: flags.legend,
      ...(title === undefined ? {} : { title })
    }, flags.out)
    yield* Console.log(`wrote ${flags.out}`)
  })).pipe(Command.withDescription("Plot recorded per-step metrics of runs, one line per run or one band per configuration"))

/** `--metric name[:scale]`. */
const metricArgument = (text: string) => {
  const [metric, scale] = text.split(":")
  return scale === undefined || (scales as ReadonlyArray<string>).includes(scale)
    ? Effect.succeed([metric!, scale as Scale | undefined] as const)
    : Effect.fail(new InvalidConfig({ message: `--metric ${text}: "${scale}" is not a scale; use one of ${scales.join(", ")}.` }))
}

const compareCommand = Command.make("compare", {
  runs: runDirs,
  format: Flag.Literals("format", ["markdown", "csv", "json"]).pipe(Flag.withDefault("markdown" as const)),
  metric: Flag.String("metric").pipe(Flag.withDescription("final metric column to show (repeatable; default all)"), Flag.atLeast(0)),
  group: groupFlag
}, (flags) =>
  Effect.gen(function*() {
    const runs = yield* Effect.forEach(flags.runs, RunRecord.read)
    const options = { format: flags.format, ...(flags.metric.length > 0 ? { metrics: flags.metric } : {}) }
    const byConfiguration = flags.group === "configuration" || (flags.group === "auto" && hasRepeats(runs))
    yield* Console.log(byConfiguration ? compareConfigurations(runs, options) : compareRuns(runs, options))
  })).pipe(Command.withDescription("Tabulate final metrics and cost per run, or as mean ± std per configuration"))

const bilevel = Command.make("bilevel").pipe(
  Command.withDescription(
    "Gradient-based bilevel optimization: min_x F(x, y) s.t. y ∈ argmin_y f(x, y). " +
      "Methods (IAPTT-GM, IA-GM, RHG, T-RHG, BDA, LS, NS, …) are compositions of LL dynamics, stream " +
      "combinators and hypergradient strategies; every run is seeded, recorded and replayable."
  ),
  Command.withSubcommands([runCommand, methodsCommand, tasksCommand, gradcheckCommand, schemaCommand, plotCommand, compareCommand, replayCommand, resumeCommand, evaluateCommand, reproduceCommand, sweepCommand, runnerCommand])
)

/**
 * A user's mistake prints its message (which says what to do) and exits 1; no stack trace. A
 * command-line parse error has already been shown with the command's help.
 */
const reportFailure = (error: unknown) =>
  Effect.gen(function*() {
    const shown = typeof error === "object" && error !== null && "_tag" in error && error._tag === "ShowHelp"
    const message = typeof error === "object" && error !== null && "message" in error ? String(error.message) : String(error)
    const tag = typeof error === "object" && error !== null && "_tag" in error ? `${String(error._tag)}: ` : ""
    if (!shown) yield* Console.error(`${tag}${message}`)
    yield* Effect.sync(() => {
      process.exitCode = 1
    })
  })

/** A defect is a bug, not a user's mistake: it still gets one line (no stack trace) and exit 1, never silence. */
const reportDefect = (defect: unknown) =>
  Console.error(
    `Internal error: ${defect instanceof Error ? defect.message : String(defect)}. ` +
      `This is a bug in bilevel; please report it with the command that caused it.`
  ).pipe(Effect.andThen(Effect.sync(() => {
    process.exitCode = 1
  })))

export const main = (argv: ReadonlyArray<string>) =>
  Command.runWith(bilevel, { version: "0.1.0" })(argv).pipe(
    Effect.catch(reportFailure),
    Effect.catchDefect(reportDefect),
    Effect.provide(NodeServices.layer)
  )

NodeRuntime.runMain(main(process.argv.slice(2)), { disableErrorReporting: true })
