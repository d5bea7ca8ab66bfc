/**
 * `bilevel evaluate <runDir>`: a run's last checkpointed UL state on the task's held-out evaluation
 * (few-shot: mean test-episode accuracy with its 95% confidence interval), beside the same evaluation
 * of the run's initial state (a randomly initialized backbone, the baseline row). Training and
 * evaluation are separate programs, so a long run can be evaluated while it goes on, or again later.
 * The result is also written to `<runDir>/evaluation.json`.
 */
import { Effect, FileSystem, Schema } from "effect"
import { RunRecordError } from "../domain/errors.ts"
import { Rng } from "../domain/Rng.ts"
import { tensorScope } from "../domain/tensors.ts"
import { initialState } from "../solvers/outerLoop.ts"
import * as Checkpoint from "./checkpoint.ts"
import * as RunRecord from "./RunRecord.ts"
import { findMethod, findTask, resolveSettings } from "./settings.ts"

export const evaluationFile = "evaluation.json"

export interface Evaluation {
  readonly dir: string
  readonly task: string
  readonly method: string
  /** The outer step of the checkpoint evaluated. */
  readonly step: number
  readonly trained: Record<string, number>
  /** The same evaluation at the run's initial point (x_0, z_0), unless left out. */
  readonly initial?: Record<string, number>
  readonly wallMs: number
}

const Evaluated = Schema.Struct({
  dir: Schema.String,
  task: Schema.String,
  method: Schema.String,
  step: Schema.Number,
  trained: Schema.Record(Schema.String, Schema.Number),
  initial: Schema.optionalKey(Schema.Record(Schema.String, Schema.Number)),
  wallMs: Schema.Number
})

/** The evaluation written beside the run in `dir`; none when there is none, a `RunRecordError` when it cannot be read. */
export const readEvaluation = Effect.fnUntraced(function*(dir: string) {
  const fs = yield* FileSystem.FileSystem
  const file = `${dir}/${evaluationFile}`
  if (!(yield* fs.exists(file).pipe(Effect.orElseSucceed(() => false)))) return undefined
  const evaluation: Evaluation = yield* fs.readFileString(file).pipe(
    Effect.flatMap(Schema.decodeUnknownEffect(Schema.fromJsonString(Evaluated))),
    Effect.mapError((e) => new RunRecordError({ path: file, problem: `cannot be read (${e.message}): run \`bilevel evaluate ${dir}\` again` }))
  )
  return evaluation
})

/**
 * Evaluates the run in `dir` at its last checkpoint and, unless `baseline` is false (runs of one seed
 * share it), at its initial point.
 */
export const evaluate = Effect.fnUntraced(function*(dir: string, options: { readonly baseline?: boolean } = {}) {
  const started = performance.now()
  const info = yield* RunRecord.readInfo(dir)
  const task = yield* findTask(info.task)
  const method = yield* findMethod(info.method)
  const settings = yield* resolveSettings(task, method, info.config)
  const checkpoint = yield* Checkpoint.read(dir)
  if (checkpoint === undefined) {
    return yield* new RunRecordError({
      path: dir,
      problem: "has no checkpoint.json to evaluate: run with --checkpoint-every N (a divisor of outerSteps keeps the last state)"
    })
  }
  const result = yield* tensorScope(Effect.gen(function*() {
    const instance = yield* task.make(settings.task)
    if (instance.evaluate === undefined) {
      return yield* new RunRecordError({ path: dir, problem: `its task ${task.name} has no held-out evaluation` })
    }
    const state = yield* Checkpoint.restore(
      checkpoint,
      initialState(instance.x0, instance.y0, instance.optimizers),
      `${dir}/${RunRecord.files.checkpoint}`
    )
    const trained = yield* instance.evaluate(state.x, state.z)
    return options.baseline === false ? { trained } : { trained, initial: yield* instance.evaluate(instance.x0, instance.y0) }
  })).pipe(Effect.scoped, Effect.provide(Rng.layer(info.seed)))
  const evaluation: Evaluation = {
    dir,
    task: task.name,
    method: method.name,
    step: checkpoint.step,
    ...result,
    wallMs: performance.now() - started
  }
  const fs = yield* FileSystem.FileSystem
  yield* fs.writeFileString(`${dir}/${evaluationFile}`, JSON.stringify(evaluation, null, 2) + "\n").pipe(
    Effect.mapError((e) => new RunRecordError({ path: `${dir}/${evaluationFile}`, problem: `cannot be written: ${e.message}` }))
  )
  return evaluation
})
