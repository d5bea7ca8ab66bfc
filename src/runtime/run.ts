/**
 * A run as one Effect program: decode settings → build the task → stream outer steps → record.
 * Steps are appended to the run record as they happen; a run that fails (a `Diverged` step, say)
 * still writes its summary with the error, so nothing it computed is lost.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Exit, Stream } from "effect"
import { createRequire } from "node:module"
import { Rng } from "../domain/Rng.ts"
import { tensorScope } from "../domain/tensors.ts"
import { initialState, type OuterStep, outerSteps } from "../solvers/outerLoop.ts"
import { Backend } from "./Backend.ts"
import * as RunRecord from "./RunRecord.ts"
import type { StepRecord } from "./RunRecord.ts"
import { findMethod, findTask, resolveSettings } from "./settings.ts"

export interface RunRequest {
  readonly task: string
  readonly method: string
  readonly seed: number
  /** Raw settings (config file merged with `--set`), decoded against the task's and method's schemas. */
  readonly settings: Record<string, unknown>
  /** Run directory; default `runs/<task>-<method>-<time>`. */
  readonly out?: string | undefined
  /** Legend name in plots and tables; default the method. */
  readonly label?: string | undefined
  /** Called after each recorded outer step (progress display). */
  readonly onStep?: ((record: StepRecord, total: number) => Effect.Effect<void>) | undefined
}

export interface RunResult {
  readonly task: string
  readonly method: string
  readonly backend: string
  readonly seed: number
  readonly config: Record<string, unknown>
  readonly outerSteps: number
  readonly final: Record<string, unknown>
  readonly runDir: string
  readonly wallMs: number
}

const require = createRequire(import.meta.url)
const versions = (): Record<string, string> => ({
  node: process.version,
  effect: (require("effect/package.json") as { version: string }).version,
  "@tensorflow/tfjs-core": (require("@tensorflow/tfjs-core/package.json") as { version: string }).version
})

const defaultRunDir = (task: string, method: string) =>
  `runs/${task}-${method}-${new Date().toISOString().replace(/[:.]/g, "-")}`

const toRecord = (step: OuterStep, metrics: Record<string, number>): StepRecord => ({
  t: step.before.t,
  F: step.solution.upper,
  kbar: step.solution.kbar,
  hypergradNorm: step.hypergradNorm,
  ms: step.ms,
  cost: step.solution.cost,
  ...metrics
})

/** Runs `request` on the provided backend; every tensor it allocates is released when it ends. */
export const run = Effect.fnUntraced(function*(request: RunRequest) {
  const started = performance.now()
  const backend = yield* Backend
  const task = yield* findTask(request.task)
  const method = yield* findMethod(request.method)
  const settings = yield* resolveSettings(task, method, request.settings)
  const config = { ...settings.task, ...settings.method }
  const writer = yield* RunRecord.writer(request.out ?? defaultRunDir(task.name, method.name), {
    task: task.name,
    method: method.name,
    label: request.label ?? method.name,
    backend: backend.name,
    seed: request.seed,
    config,
    versions: versions(),
    startedAt: new Date().toISOString()
  })
  const records: Array<StepRecord> = []
  const total = settings.task.outerSteps
  const loop = Effect.gen(function*() {
    const instance = yield* task.make(settings.task)
    const solver = method.build(settings.task, settings.method)
    yield* outerSteps(solver, instance.problem, initialState(instance.x0, instance.y0, instance.optimizers), instance.optimizers).pipe(
      Stream.take(total),
      Stream.runForEach((step) => {
        const record = toRecord(step, instance.metrics(step))
        records.push(record)
        return writer.appendStep(record).pipe(Effect.andThen(request.onStep?.(record, total) ?? Effect.void))
      })
    )
    return instance.summarize(records)
  }).pipe(Effect.scoped, tensorScope, Effect.provide(Rng.layer(request.seed)))
  const exit = yield* Effect.exit(loop)
  const wallMs = performance.now() - started
  yield* writer.finish({
    status: Exit.isSuccess(exit) ? "completed" : "failed",
    outerSteps: records.length,
    final: Exit.isSuccess(exit) ? exit.value : {},
    wallMs,
    ...(Exit.isFailure(exit) ? { error: String(exit.cause) } : {})
  })
  const final = yield* exit
  return {
    task: task.name,
    method: method.name,
    backend: backend.name,
    seed: request.seed,
    config,
    outerSteps: records.length,
    final,
    runDir: writer.dir,
    wallMs
  } satisfies RunResult
})

/** tfjs tensors alive now (tests assert a run leaves this unchanged). */
export const liveTensors = (): number => tf.memory().numTensors
