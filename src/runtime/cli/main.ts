/**
 * The `bilevel` command line. It is the only module that knows about argv, files and terminals;
 * every subcommand is a thin shell over an Effect program of `src/runtime`.
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Console, Effect, FileSystem, Layer, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as path from "node:path"
import * as YAML from "yaml"
import { GradcheckFailed, InvalidConfig } from "../../domain/errors.ts"
import { methods } from "../../solvers/methods.ts"
import { tasks } from "../../tasks/registry.ts"
import { backendLayer } from "../autoBackend.ts"
import * as Backend from "../Backend.ts"
import { hasRepeats } from "../aggregate.ts"
import { compareConfigurations, compareRuns } from "../compare.ts"
import { defaultStep, gradcheck } from "../gradcheck.ts"
import { type Scale, scales, writePlot } from "../plot.ts"
import { packageVersion } from "../provenance.ts"
import { defaultCheckpointEvery, run } from "../run.ts"
import { findMethod, jsonSchema, parseAssignment, resolveSettings, settingKeys } from "../settings.ts"
import { loadTaskModule, resolveTask } from "../taskModule.ts"
import { exportCommand } from "./export.ts"
import { presenter, reportDefect, reportFailure, wantsJson } from "./failure.ts"
import { progressBar, readRecords, summaryLines } from "./output.ts"
import { reproduceCommand } from "./reproduce.ts"
import { replayCommand } from "./replay.ts"
import { resumeCommand } from "./resume.ts"
import { runnerCommand } from "./runner.ts"
import { sweepCommand } from "./sweep.ts"
import { evaluateCommand } from "./evaluate.ts"

const taskArgument = Argument.String("task").pipe(
  Argument.withDescription(
    `the problem to solve: a built-in task (${tasks.map((t) => t.name).join(", ")}; see \`bilevel tasks\`), ` +
      "the path of your own task module (./ridge.ts: its one task, see docs/your-own-problem.md), or a task's name " +
      "in --task-module"
  )
)
const taskModuleFlag = (use = "the task argument then names one of them") =>
  Flag.String("task-module").pipe(
    Flag.withMetavar("file"),
    Flag.withDescription(
      `a .ts or .js module of your own exporting tasks made with defineTask (docs/your-own-problem.md): ${use}`
    ),
    Flag.optional
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
  Flag.withMetavar("file"),
  Flag.withDescription(
    "a file of settings {key: value}: YAML (.yaml, .yml) or JSON (any other name); --set overrides it " +
      "(`bilevel schema TASK -m METHOD` prints its JSON Schema)"
  ),
  Flag.optional
)
const jsonFlag = Flag.Boolean("json").pipe(Flag.withDescription("print exactly one JSON object on stdout"), Flag.withDefault(false))

const isYaml = (file: string) => /\.ya?ml$/i.test(file)

/** Settings from --config (a YAML or JSON object) merged with --set pairs. */
const gatherSettings = Effect.fnUntraced(function*(config: Option.Option<string>, sets: ReadonlyArray<string>) {
  const fs = yield* FileSystem.FileSystem
  const fromFile: Record<string, unknown> = Option.isSome(config)
    ? yield* fs.readFileString(config.value).pipe(
      Effect.mapError(() => new InvalidConfig({ message: `Config file ${config.value} cannot be read.` })),
      Effect.flatMap((text) =>
        Effect.try({
          try: () => (isYaml(config.value) ? YAML.parse(text) : JSON.parse(text)) as unknown,
          catch: (e) =>
            new InvalidConfig({
              message: `Config file ${config.value} is not valid ${isYaml(config.value) ? "YAML" : "JSON"}: ${(e as Error).message}` +
                (isYaml(config.value) ? "" : " (name it .yaml or .yml to write it in YAML)")
            })
        })
      ),
      Effect.flatMap((value) =>
        typeof value === "object" && value !== null && !Array.isArray(value)
          ? Effect.succeed(value as Record<string, unknown>)
          : Effect.fail(
            new InvalidConfig({
              message: `Config file ${config.value} must hold an object of settings, e.g. ` +
                (isYaml(config.value) ? "`innerSteps: 40`." : `{"innerSteps": 40}.`)
            })
          )
      )
    )
    : {}
  const pairs = yield* Effect.forEach(sets, parseAssignment)
  return { ...fromFile, ...Object.fromEntries(pairs) }
})

/** What `--dry-run` prints: the run a command would start, with every setting decoded (defaults filled in). */
const resolvedRun = Effect.fnUntraced(function*(request: {
  readonly task: string
  readonly taskModule: string | undefined
  readonly method: string
  readonly seed: number
  readonly backend: string
  readonly settings: Record<string, unknown>
}) {
  const { module, task } = yield* resolveTask(request.task, request.taskModule)
  const method = yield* findMethod(request.method)
  const settings = yield* resolveSettings(task, method, request.settings)
  return {
    task: task.name,
    ...(module === undefined ? {} : { taskModule: module }),
    method: method.name,
    seed: request.seed,
    backend: request.backend,
    config: { ...settings.task, ...settings.method }
  }
})

const dryRunFlag = Flag.Boolean("dry-run").pipe(
  Flag.withDescription("print the resolved run (task, method, seed, backend, every setting with its default) as JSON and exit"),
  Flag.withDefault(false)
)

const runCommand = Command.make("run", {
  task: taskArgument,
  taskModule: taskModuleFlag(),
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
  dryRun: dryRunFlag,
  json: jsonFlag
}, (flags) =>
  Effect.gen(function*() {
    const settings = yield* gatherSettings(flags.config, flags.set)
    const taskModule = Option.getOrUndefined(flags.taskModule)
    if (flags.dryRun) {
      const resolved = yield* resolvedRun({ ...flags, taskModule, settings })
      return yield* Console.log(JSON.stringify(resolved, null, 2))
    }
    const progress = flags.json ? undefined : progressBar(`${path.basename(flags.task)} · ${flags.method}`)
    const result = yield* run({
      task: flags.task,
      taskModule,
      command: ["bilevel", ...process.argv.slice(2)],
      method: flags.method,
      seed: flags.seed,
      settings,
      out: Option.getOrUndefined(flags.out),
      label: Option.getOrUndefined(flags.label),
      onStep: progress?.onStep,
      checkpointEvery: flags.checkpointEvery,
      handleSignals: true
    }).pipe(
      Effect.ensuring(progress?.stop ?? Effect.void),
      Effect.provide(backendLayer(flags.backend, { task: flags.task, taskModule, method: flags.method, seed: flags.seed, settings }))
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
      { command: "bilevel run quadratic -m ls --set cgIters=50 --backend cpu", description: "LS on the closed-form quadratic" },
      { command: "bilevel run ./ridge.ts -m iaptt-gm --out runs/ridge", description: "your own task (docs/your-own-problem.md)" },
      { command: "bilevel run hyper-cleaning -m rhg --config settings.yaml --dry-run", description: "print the resolved settings, run nothing" }
    ])
  )

const describeSettings = (schema: Parameters<typeof settingKeys>[0]) =>
  settingKeys(schema).map((k) => `      ${k.key} = ${JSON.stringify(k.default)}  ${k.description}`).join("\n")

const methodsCommand = Command.make("methods", {}, () =>
  Console.log(methods.map((m) => {
    const keys = describeSettings(m.settings)
    return `${m.name.padEnd(12)} ${m.description}${keys ? `\n${keys}` : ""}`
  }).join("\n"))).pipe(
    Command.withDescription("List the solver presets, one line each, with the settings each adds"),
    Command.withExamples([{ command: "bilevel methods", description: "every preset and its settings (set them with --set key=value)" }])
  )

const tasksCommand = Command.make("tasks", { taskModule: taskModuleFlag("its tasks are listed after the built-in ones") }, (flags) =>
  Effect.gen(function*() {
    const own = Option.isSome(flags.taskModule) ? (yield* loadTaskModule(flags.taskModule.value)).tasks : []
    yield* Console.log(
      [...tasks, ...own].map((t) => `${t.name.padEnd(14)} ${t.description}\n${describeSettings(t.settings)}`).join("\n")
    )
  })).pipe(
    Command.withDescription("List the tasks, one line each, with their settings and defaults"),
    Command.withExamples([
      { command: "bilevel tasks", description: "the built-in tasks" },
      { command: "bilevel tasks --task-module ./ridge.ts", description: "with the tasks of your own module" }
    ])
  )

const gradcheckCommand = Command.make("gradcheck", {
  task: taskArgument,
  taskModule: taskModuleFlag(),
  method: methodFlag,
  seed: seedFlag,
  backend: backendFlag("cpu"),
  set: setFlag,
  config: configFlag,
  step: Flag.Finite("step").pipe(
    Flag.withDescription(
      "finite-difference step: the largest coordinate move, relative to the size of the coordinates moved; " +
        "with the fourth-order stencil used, float32 rounding dominates below ≈ 3e-2 and nonlinearity above ≈ 3e-1"
    ),
    Flag.filter((h) => h > 0, (h) => `--step must be positive, got ${h}`),
    Flag.withDefault(defaultStep)
  ),
  directions: Flag.Int("directions").pipe(
    Flag.withDescription("compare along this many random directions when x (and z) have more than 4× as many coordinates"),
    Flag.filter((n) => n > 0, (n) => `--directions must be positive, got ${n}`),
    Flag.withDefault(16)
  ),
  tolerance: Flag.Finite("tolerance").pipe(
    Flag.withDescription("exit 1 when the relative error exceeds this (a gate for scripts and CI)"),
    Flag.filter((t) => t >= 0, (t) => `--tolerance must be ≥ 0, got ${t}`),
    Flag.optional
  ),
  json: jsonFlag
}, (flags) =>
  Effect.gen(function*() {
    const settings = yield* gatherSettings(flags.config, flags.set)
    const taskModule = Option.getOrUndefined(flags.taskModule)
    const result = yield* gradcheck({
      task: flags.task,
      taskModule,
      method: flags.method,
      seed: flags.seed,
      settings,
      step: flags.step,
      directions: flags.directions
    }).pipe(
      Effect.provide(backendLayer(flags.backend, { task: flags.task, taskModule, method: flags.method, seed: flags.seed, settings }))
    )
    const { expected, hypergradient, ...summary } = result
    const failed = Option.isSome(flags.tolerance) && !(result.relError <= flags.tolerance.value)
    // With --json a failed gate is printed once, as the GradcheckFailed error object.
    if (flags.json && !failed) return yield* Console.log(JSON.stringify(summary))
    if (!flags.json) {
      yield* Console.log(
        `${result.method} on ${result.task}: relative error ${result.relError.toExponential(3)} against the ` +
          `${result.reference} (${result.compared})\n  cost: ${JSON.stringify(result.cost)}\n` +
          `  hypergradient (first 5): ${hypergradient.slice(0, 5).map((v) => v.toPrecision(6)).join(", ")}\n` +
          `  reference     (first 5): ${expected.slice(0, 5).map((v) => v.toPrecision(6)).join(", ")}` +
          (result.note ? `\n  note: ${result.note}` : "")
      )
    }
    if (Option.isSome(flags.tolerance) && failed) {
      return yield* new GradcheckFailed({
        task: result.task,
        method: result.method,
        relError: result.relError,
        tolerance: flags.tolerance.value,
        reference: result.reference
      })
    }
  })).pipe(
    Command.withDescription(
      "Check a method's hypergradient at the task's initial point: against the closed form where the task has one, " +
        "otherwise against central finite differences of the same truncated pipeline"
    ),
    Command.withExamples([
      { command: "bilevel gradcheck quadratic --method ls --set cgIters=60", description: "LS against the closed form" },
      { command: "bilevel gradcheck toy-nonconvex --method iaptt-gm --json", description: "PTT against finite differences" },
      { command: "bilevel gradcheck ./ridge.ts -m iaptt-gm", description: "your own task" }
    ])
  )

const schemaCommand = Command.make("schema", {
  task: taskArgument,
  taskModule: taskModuleFlag(),
  method: methodFlag.pipe(Flag.optional)
}, (flags) =>
  Effect.gen(function*() {
    const { task } = yield* resolveTask(flags.task, Option.getOrUndefined(flags.taskModule))
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
  })).pipe(
    Command.withDescription("Print the JSON Schema of a task's (and a method's) settings, for --config files and editors"),
    Command.withExamples([
      { command: "bilevel schema toy-nonconvex --method iaptt-gm > schema.json", description: "for an editor checking config files" }
    ])
  )

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
  title: Flag.String("title").pipe(Flag.withDescription("title above the figure (default none)"), Flag.optional)
}, (flags) =>
  Effect.gen(function*() {
    const runs = yield* readRecords(flags.runs)
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
  })).pipe(
    Command.withDescription("Plot recorded per-step metrics of runs, one line per run or one band per configuration"),
    Command.withExamples([
      {
        command: "bilevel run quadratic -m rhg --out runs/rhg && bilevel run quadratic -m ls --out runs/ls && " +
          "bilevel plot runs/rhg runs/ls --metric F --metric xError:log --out f.svg",
        description: "two runs first, then F and the distance to x* of both"
      }
    ])
  )

/** `--metric name[:scale]`. */
const metricArgument = (text: string) => {
  const [metric, scale] = text.split(":")
  return scale === undefined || (scales as ReadonlyArray<string>).includes(scale)
    ? Effect.succeed([metric!, scale as Scale | undefined] as const)
    : Effect.fail(new InvalidConfig({ message: `--metric ${text}: "${scale}" is not a scale; use one of ${scales.join(", ")}.` }))
}

const compareCommand = Command.make("compare", {
  runs: runDirs,
  format: Flag.Literals("format", ["markdown", "csv", "json"]).pipe(
    Flag.withDescription("table format on stdout"),
    Flag.withDefault("markdown" as const)
  ),
  metric: Flag.String("metric").pipe(Flag.withDescription("final metric column to show (repeatable; default all)"), Flag.atLeast(0)),
  group: groupFlag
}, (flags) =>
  Effect.gen(function*() {
    const runs = yield* readRecords(flags.runs)
    const recorded = [...new Set(runs.flatMap((run) => Object.keys(run.summary?.final ?? {})))]
    const missing = flags.metric.filter((metric) => !recorded.includes(metric))
    if (missing.length > 0) {
      return yield* new InvalidConfig({
        message: `--metric ${missing.join(", ")}: no such final metric in these runs. Recorded: ${recorded.join(", ")}.`
      })
    }
    const options = { format: flags.format, ...(flags.metric.length > 0 ? { metrics: flags.metric } : {}) }
    const byConfiguration = flags.group === "configuration" || (flags.group === "auto" && hasRepeats(runs))
    yield* Console.log(byConfiguration ? compareConfigurations(runs, options) : compareRuns(runs, options))
  })).pipe(
    Command.withDescription("Tabulate final metrics and cost per run, or as mean ± std per configuration"),
    Command.withExamples([
      {
        command: "bilevel run toy-nonconvex -m rhg --out runs/rhg && bilevel run toy-nonconvex -m iaptt-gm --out runs/iaptt && " +
          "bilevel compare runs/rhg runs/iaptt --format csv",
        description: "two runs first, then their final metrics side by side"
      }
    ])
  )

const bilevel = Command.make("bilevel").pipe(
  Command.withDescription(
    "Gradient-based bilevel optimization: min_x F(x, y) s.t. y ∈ argmin_y f(x, y). " +
      "Methods (IAPTT-GM, IA-GM, RHG, T-RHG, BDA, LS, NS, …) are compositions of LL dynamics, stream " +
      "combinators and hypergradient strategies; every run is seeded, recorded and replayable."
  ),
  Command.withExamples([
    { command: "bilevel run toy-nonconvex -m iaptt-gm --out runs/toy", description: "solve a built-in task, recording every step" },
    { command: "bilevel gradcheck ./ridge.ts -m iaptt-gm", description: "check a hypergradient on your own task" },
    { command: "bilevel export runs/toy --format csv > toy.csv", description: "the recorded steps for other tools" }
  ]),
  Command.withSubcommands([
    runCommand,
    methodsCommand,
    tasksCommand,
    gradcheckCommand,
    schemaCommand,
    plotCommand,
    compareCommand,
    exportCommand,
    replayCommand,
    evaluateCommand,
    resumeCommand,
    reproduceCommand,
    sweepCommand,
    runnerCommand
  ])
)

export const main = (argv: ReadonlyArray<string>) =>
  Command.runWith(bilevel, { version: packageVersion })(argv).pipe(
    Effect.catch(reportFailure(wantsJson(argv))),
    Effect.catchDefect(reportDefect(wantsJson(argv))),
    Effect.provide(Layer.merge(NodeServices.layer, presenter(wantsJson(argv))))
  )

NodeRuntime.runMain(main(process.argv.slice(2)), { disableErrorReporting: true })
