/**
 * `bilevel reproduce fewshot`: the paper's few-shot experiment (IAPTT-GM Eq. 11, Tables 2 and 5) on the
 * data available here: FashionMNIST episodes over held-out classes by default, or a folder per class
 * (`--set source=folder --set dataDir=DIR`). Each method (default IAPTT-GM, RHG, first-order) meta-trains
 * a ConvNet-4 with `run` into `OUT/records/<method>`, checkpointing its last state; each record is then
 * evaluated on test episodes (`bilevel evaluate`, with the random-backbone baseline), and the report
 * compares the methods at equal training wall time, with plots of the query loss and the validation
 * accuracy over wall time. Complete records and evaluations are kept (unfinished records resumed), so methods can be run by separate
 * invocations into one directory (`--set methods=…`) and the report covers them all; `OUT/notes.md`, where
 * present, is included in the report as it is (runs outside the table, such as another backbone's).
 */
import { Effect, FileSystem, Schema } from "effect"
import { InvalidConfig } from "../../domain/errors.ts"
import { choice, count, natural } from "../../domain/settings.ts"
import { evaluate, readEvaluation } from "../evaluate.ts"
import { chosenMethods, type RunSpec, runMissing } from "./runs.ts"
import * as RunRecord from "../RunRecord.ts"
import { define, type ExperimentOptions } from "./Experiment.ts"
import { checksSection, figure, header, machine, readNotes, table, writeReport } from "./report.ts"

const defaultMethods = "iaptt-gm,rhg,first-order"

const Settings = Schema.Struct({
  source: choice(["fashion-mnist", "folder"], "fashion-mnist", "FashionMNIST's IDX training file, or a folder per class (dataDir)"),
  dataDir: Schema.optionalKey(Schema.String.annotate({ description: "the IDX directory, or the folder of class folders" })),
  imageSize: count(84, "source=folder: images resized to imageSize × imageSize"),
  ways: count(3, "N (FashionMNIST's 10 classes split 4 / 3 / 3 leave 3-way episodes in every split)"),
  shots: count(1, "M"),
  queries: count(15, "Q"),
  trainClasses: count(4, "meta-training classes"),
  validationClasses: natural(3, "validation classes"),
  testClasses: count(3, "held-out test classes"),
  metaBatch: count(4, "episodes per outer step"),
  width: count(32, "ConvNet-4 channels"),
  outerSteps: count(120, "outer steps per method (the paper: 80 000)"),
  evalEvery: count(20, "validation accuracy (and a checkpoint) every this many outer steps"),
  validationEpisodes: count(60, "episodes per validation accuracy"),
  testEpisodes: count(600, "test episodes per evaluation"),
  methods: Schema.String.annotate({ description: "comma-separated methods", default: defaultMethods }).pipe(
    Schema.withDecodingDefaultKey(Effect.succeed(defaultMethods))
  ),
  reportOnly: Schema.Boolean.annotate({ description: "only evaluate missing records and rewrite the report", default: false }).pipe(
    Schema.withDecodingDefaultKey(Effect.succeed(false))
  )
})
export type FewShotExperimentSettings = typeof Settings.Type

const recordsDir = (out: string) => `${out}/records`

/** The task settings every run gets. */
const taskSettings = ({ methods: _m, reportOnly: _r, ...s }: FewShotExperimentSettings): Record<string, unknown> => ({
  ...s,
  ...(s.source === "folder" ? { color: "gray" } : {})
})

/** One run per chosen method, recorded in `records/<method>`, checkpointed for evaluation. */
const specsOf = (options: ExperimentOptions<FewShotExperimentSettings>, chosen: ReadonlyArray<string>): ReadonlyArray<RunSpec> =>
  chosen.map((method) => ({
    dir: `records/${method}`,
    label: method,
    task: "fewshot",
    method,
    seed: options.seeds[0]!,
    settings: taskSettings(options.settings),
    checkpointEvery: options.settings.evalEvery
  }))

/** A record's evaluation: the one written beside it, or a new one (with the baseline when `baseline`). */
const evaluationOf = Effect.fnUntraced(function*(dir: string, baseline: boolean) {
  return (yield* readEvaluation(dir)) ?? (yield* evaluate(dir, { baseline }))
})

const percent = (mean: number | undefined, ci?: number | undefined) =>
  mean === undefined ? "–" : `${(100 * mean).toFixed(2)}${ci === undefined ? "" : ` ± ${(100 * ci).toFixed(2)}`}`

/** Training wall time (s) after each step: the running sum of step times, metrics excluded. */
const wallAfter = (r: RunRecord.RunRecord) => {
  let wall = 0
  return r.steps.map((s) => (wall += s.ms / 1000))
}

/** What a run had reached after `budget` seconds of training: its last validation accuracy, its mean F over the 10 steps before. */
const atWall = (r: RunRecord.RunRecord, budget: number) => {
  const walls = wallAfter(r)
  const within = r.steps.filter((_, i) => walls[i]! <= budget + 1e-9)
  const validated = within.filter((s) => typeof s["valAccuracy"] === "number").at(-1)
  const recent = within.slice(-10)
  return {
    steps: within.length,
    F: recent.reduce((a, s) => a + s.F, 0) / Math.max(recent.length, 1),
    valAccuracy: validated?.["valAccuracy"] as number | undefined,
    valAccuracyCi95: validated?.["valAccuracyCi95"] as number | undefined,
    valStep: validated?.t
  }
}

export const fewShotExperiment = define({
  name: "fewshot",
  description: "IAPTT-GM's few-shot experiment (Eq. 11): ConvNet-4 meta-trained on FashionMNIST (or folder) episodes by " +
    "IAPTT-GM, RHG and first-order; test accuracy ± 95% CI against a random backbone, and the methods at equal wall time",
  defaultBackend: "wasm",
  defaultSeeds: [0],
  settings: Settings,
  run: (options) =>
    Effect.gen(function*() {
      const started = performance.now()
      const chosen = yield* chosenMethods("fewshot", options.settings.methods, options.seeds)
      const fs = yield* FileSystem.FileSystem
      yield* fs.makeDirectory(recordsDir(options.out), { recursive: true })
      if (!options.settings.reportOnly) yield* runMissing(specsOf(options, chosen), options)
      const names = (yield* fs.readDirectory(recordsDir(options.out))).sort((a, b) => (chosen.indexOf(a) + 1 || 99) - (chosen.indexOf(b) + 1 || 99))
      const runs = yield* Effect.forEach(names, (name) => RunRecord.read(`${recordsDir(options.out)}/${name}`))
      if (runs.length === 0) return yield* new InvalidConfig({ message: `${recordsDir(options.out)} holds no run records: run some methods first.` })
      // The runs share the seed, so x_0 and z_0: the random backbone is evaluated once, with the first run.
      const evaluations = yield* Effect.forEach(runs, (r, i) => evaluationOf(r.dir, i === 0))
      for (const [i, e] of evaluations.entries()) yield* options.progress(`${runs[i]!.info.label}: test ${percent(e.trained["testAccuracy"], e.trained["testAccuracyCi95"])} %`)
      const budget = Math.min(...runs.map((r) => wallAfter(r).at(-1) ?? 0))
      const baseline = evaluations.find((e) => e.initial !== undefined)?.initial ?? (yield* evaluate(runs[0]!.dir)).initial!
      const rows = runs.map((r, i) => {
        const e = evaluations[i]!.trained
        const at = atWall(r, budget)
        return [
          r.info.label,
          `${r.steps.length}${r.summary?.status === "completed" ? "" : ` (${r.summary?.status ?? "stopped"})`}`,
          (wallAfter(r).at(-1) ?? 0).toFixed(0),
          (r.steps.reduce((a, s) => a + s.ms, 0) / Math.max(r.steps.length, 1) / 1000).toFixed(2),
          (r.steps.reduce((a, s) => a + s.kbar, 0) / Math.max(r.steps.length, 1)).toFixed(2),
          at.steps === 0
            ? "–"
            : `${at.steps} / ${at.F.toFixed(3)} / ${percent(at.valAccuracy, at.valAccuracyCi95)}${at.valStep === undefined ? "" : ` (t = ${at.valStep})`}`,
          `${percent(e["testAccuracy"], e["testAccuracyCi95"])} (step ${evaluations[i]!.step})`
        ]
      })
      const separated = runs.map((r, i) => {
        const e = evaluations[i]!.trained
        return {
          label: r.info.label,
          passed: e["testAccuracy"]! - e["testAccuracyCi95"]! > baseline["testAccuracy"]! + baseline["testAccuracyCi95"]!
        }
      })
      const checks = [{
        name: "on held-out classes the trained backbone beats a randomly initialized one by more than both confidence intervals",
        passed: separated.some((s) => s.passed),
        detail: `random backbone ${percent(baseline["testAccuracy"], baseline["testAccuracyCi95"])} %; ` +
          separated.map((s) => `${s.label}: ${s.passed ? "beats it" : "does not"}`).join(", ")
      }]
      // Without validation classes no run records a validation accuracy: F alone is plotted.
      const validated = runs.some((r) => r.steps.some((step) => typeof step["valAccuracy"] === "number"))
      const metrics = validated ? ["F", "valAccuracy"] : ["F"]
      const plotted = validated ? "Query loss F and validation accuracy" : "Query loss F"
      const stepFigure = yield* figure(runs, { metrics, title: `${plotted} over outer steps` }, options.out, "over-steps")
      const wallFigure = yield* figure(runs, { metrics, title: `${plotted} over training wall time`, x: "time" }, options.out, "over-wall-time")
      const commands = yield* fs.readFileString(`${options.out}/commands.txt`).pipe(Effect.orElseSucceed(() => "(not recorded)"))
      // Hand-written notes on runs outside the table (another backbone, a longer run), kept beside the records.
      const notes = yield* readNotes(options.out)
      const s = options.settings
      const report = yield* writeReport(options.out, [
        header({
          title: `Few-shot classification: ${s.source === "folder" ? s.dataDir : "FashionMNIST"} ${s.ways}-way ${s.shots}-shot`,
          about: "The paper meta-trains a ConvNet-4 (or ResNet-12) on miniImageNet / tieredImageNet episodes for 80 000 outer " +
            "steps (Table 5) and reports IAPTT-GM's accuracy among other methods (Table 2). Those datasets are not here, and " +
            "80 000 steps take days on this machine's CPU. This experiment runs the same pipeline (episodes per outer step, " +
            "ConvNet-4 backbone x, a linear head y per episode with the non-convex ‖·‖_q penalty in the LL, Adam on x and z) " +
            `for ${s.outerSteps} outer steps on FashionMNIST classes split ${s.trainClasses} / ${s.validationClasses} / ${s.testClasses} ` +
            "(train / validation / test; 10 classes cannot hold 5-way episodes in all three splits), and asks two questions: " +
            "does meta-training help on held-out classes (against a randomly initialized backbone), and how do the methods " +
            "compare at equal training wall time.",
          options: options as unknown as ExperimentOptions<Record<string, unknown>>,
          backend: runs[0]!.info.backend,
          runs,
          wallMs: performance.now() - started
        }),
        `Machine: ${machine()}. Step times are wall times on this shared machine: other processes ran beside these runs.`,
        checksSection(checks),
        "## Results\n\n" +
        `At equal wall time: each run's state after ${budget.toFixed(0)} s of training (the shortest run's total; step ` +
        "times exclude the validation metric): steps done, mean query loss F over its last 10 steps, and its last validation " +
        "accuracy ± 95% CI. Test accuracy is over " + `${baseline["testEpisodes"]} test episodes of held-out classes, at each ` +
        "run's last checkpoint (`bilevel evaluate`), after K plain gradient steps of the head on the support set. F is " +
        "the query loss at the head the method selects, y_k̄: for IAPTT-GM the pessimistic (largest-F) of its K iterates, " +
        "so its F curve lies above the others' by construction; compare the methods by validation and test accuracy. " +
        "Wall times are only comparable between runs that ran under the same load: the commands below say which ran together.",
        table(
          ["method", "outer steps", "training wall s", "s / outer step", "mean k̄", `at ${budget.toFixed(0)} s: steps / F / val acc %`, "test acc % ± 95% CI"],
          [...rows, ["random backbone (x_0, z_0)", "0", "–", "–", "–", "–", percent(baseline["testAccuracy"], baseline["testAccuracyCi95"])]]
        ),
        wallFigure,
        stepFigure,
        "## What differs from the paper's protocol\n\n" + [
          `- ${s.outerSteps} outer steps, not 80 000; FashionMNIST (28×28×1, ${s.trainClasses} training classes), not miniImageNet (84×84×3, 64 classes).`,
          `- ${s.ways}-way ${s.shots}-shot, ${s.queries} queries per class, meta-batch ${s.metaBatch}, ConvNet-4 with ${s.width} channels, K = 10, LL step 0.1, Adam 0.001 on x and z; q = 0.5, ε = 0.1, λ = 0.25.`,
          "- Batch norm uses each episode's own statistics (support and query together), at training and at test, as MAML does.",
          "- Test-time adaptation is K plain gradient steps from the head's y_0 (z under auxiliary-init) for every method: PTT and BDA would read the query labels.",
          "- One seed; the validation accuracy is over the same episodes at every evaluation."
        ].join("\n"),
        ...(notes === undefined ? [] : [notes]),
        "## Commands\n\n```sh\n" + commands.trim() + "\n" + runs.map((r) => `bilevel evaluate ${r.dir}`).join("\n") + "\n```"
      ])
      return { report, checks, wallMs: performance.now() - started }
    })
})
