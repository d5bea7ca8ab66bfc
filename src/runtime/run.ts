/**
 * A run as one Effect program: decode settings → build the task → stream outer steps → record.
 * Steps are appended to the run record as they happen, and every `checkpointEvery` outer steps the
 * UL state is checkpointed; a run that fails (a `Diverged` step, say) still writes its summary with
 * the error, so nothing it computed is lost, and a killed one can be continued by {@link resume}.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Cause, Console, Effect, Exit, Stream } from "effect"
import { RunRecordError } from "../domain/errors.ts"
import { fullBatch } from "../domain/Problem.ts"
import * as Random from "../domain/Random.ts"
import { Rng } from "../domain/Rng.ts"
import { tensorScope } from "../domain/tensors.ts"
import type { Method } from "../solvers/methods.ts"
import { last } from "../dynamics/selection.ts"
import { initialState, type OuterStep, outerSteps } from "../solvers/outerLoop.ts"
import { initialAdjoint, lowerSolution, select } from "../solvers/Solver.ts"
import type { LowerTraining } from "../tasks/Task.ts"
import type { Task } from "../tasks/Task.ts"
import { Backend } from "./Backend.ts"
import * as Arrays from "./arrays.ts"
import * as Checkpoint from "./checkpoint.ts"
import { checkMemory } from "./memoryEstimate.ts"
import { gitState, versions } from "./provenance.ts"
import * as RunLock from "./runLock.ts"
import * as RunRecord from "./RunRecord.ts"
import type { StepRecord } from "./RunRecord.ts"
import { type GivenInCode, recordedTaskAndMethod } from "./recordedRun.ts"
import { checkCombination, type ResolvedSettings, resolveMethod, resolveSettings } from "./settings.ts"
import { resolveTask } from "./taskModule.ts"

export interface RunRequest {
  /** A built-in task's name, a task module's path, a task's name in `taskModule`, or a `Task` value. */
  readonly task: string | Task
  /** A user's module exporting the task named `task` (see `taskModule.ts`). */
  readonly taskModule?: string | undefined
  /** A preset's name (`bilevel methods`) or a `Method` value. */
  readonly method: string | Method
  readonly seed: number
  /** Raw settings (config file merged with `--set`), decoded against the task's and method's schemas. */
  readonly settings: Record<string, unknown>
  /** Run directory; default `runs/<task>-<method>-<time>`. */
  readonly out?: string | undefined
  /** Legend name in plots and tables; default the method. */
  readonly label?: string | undefined
  /** Called after each recorded outer step (progress display). */
  readonly onStep?: ((record: StepRecord, total: number) => Effect.Effect<void>) | undefined
  /** Checkpoint the UL state every this many outer steps (0: never); default {@link defaultCheckpointEvery}. */
  readonly checkpointEvery?: number | undefined
  /** Stop after this many outer steps even if the settings ask for more (replaying an interrupted record). */
  readonly stopAfter?: number | undefined
  /** The command line that asked for the run, recorded in run.json. */
  readonly command?: ReadonlyArray<string> | undefined
  /** End cleanly on SIGINT/SIGTERM (see {@link runSession}); for a command-line process, which owns its signals. */
  readonly handleSignals?: boolean | undefined
  /** What the line printed after such a signal says continues the run; default `bilevel resume <dir>`. */
  readonly continueWith?: string | undefined
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
  /** The outer step a resumed run continued from. */
  readonly resumedFrom?: number
  /** The signal that ended the run early (with `handleSignals`); its record resumes from there. */
  readonly signal?: NodeJS.Signals
}

/** Which of the request's task and method are values given in code, which no file records. */
const definedInCode = (request: RunRequest): ReadonlyArray<"task" | "method"> | undefined => {
  const inCode = [
    ...(typeof request.task === "string" ? [] : ["task" as const]),
    ...(typeof request.method === "string" ? [] : ["method" as const])
  ]
  return inCode.length === 0 ? undefined : inCode
}

/** `{ key: value }`, or nothing when the value is absent (run.json's optional fields). */
const optional = <K extends string, V>(key: K, value: V | undefined) =>
  value === undefined ? {} : { [key]: value } as { [k in K]: V }

/** Checkpoint interval of a run that does not choose one: cheap next to 50 outer steps of any task. */
export const defaultCheckpointEvery = 50

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

/** A typed failure as `Tag: message` (what the CLI prints); anything else as Effect renders it. */
const describeFailure = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.squash(cause)
  return typeof error === "object" && error !== null && "_tag" in error && "message" in error
    ? `${String(error._tag)}: ${String(error.message)}`
    : Cause.hasInterruptsOnly(cause)
    ? "interrupted"
    : String(cause)
}

/** Everything one session of a run needs: a fresh run, or a resumed one with its checkpoint. */
interface Session {
  readonly task: Task
  readonly method: Method
  readonly settings: ResolvedSettings
  readonly seed: number
  readonly writer: RunRecord.Writer
  readonly checkpointEvery: number
  /** Outer steps the run ends after. */
  readonly total: number
  readonly onStep?: RunRequest["onStep"]
  readonly handleSignals?: boolean | undefined
  readonly continueWith?: string | undefined
  /** Where a resumed session starts: the steps recorded before it, and the checkpoint they end at. */
  readonly resume?: {
    readonly steps: ReadonlyArray<StepRecord>
    readonly checkpoint: Checkpoint.Checkpoint | undefined
  }
}

/** The signals that end a command-line run cleanly. */
const stopSignals: ReadonlyArray<NodeJS.Signals> = ["SIGINT", "SIGTERM"]

/**
 * Runs the outer loop of `session` and writes its summary, failed or not. With `handleSignals`, a
 * first SIGINT/SIGTERM lets the current outer step finish, checkpoints it, writes the summary with
 * status `interrupted` and prints how to resume; the session is uninterruptible meanwhile (the
 * runtime's own interruption of the process takes effect after it, exiting 130). A second signal
 * abandons the step at once: the record then ends at its previous checkpoint, which resume reads.
 */
const runSession = (session: Session) => {
  if (!session.handleSignals) return sessionLoop(session, {})
  const stop: { signal?: NodeJS.Signals } = {}
  const onSignal = (signal: NodeJS.Signals) => {
    if (stop.signal !== undefined) process.exit(130)
    stop.signal = signal
  }
  return Effect.acquireUseRelease(
    Effect.sync(() => stopSignals.forEach((s) => process.on(s, onSignal))),
    () => sessionLoop(session, stop),
    () => Effect.sync(() => stopSignals.forEach((s) => process.removeListener(s, onSignal)))
  ).pipe(Effect.uninterruptible)
}

const sessionLoop = Effect.fnUntraced(function*(session: Session, stop: { readonly signal?: NodeJS.Signals }) {
  const started = performance.now()
  const { checkpointEvery, resume, task, writer } = session
  const records: Array<StepRecord> = [...(resume?.steps ?? [])]
  const loop = Effect.gen(function*() {
    const rng = yield* Rng
    // The instance is built from the seed even when resuming (a task may draw its data here), and the
    // generator is restored only after it: from then on it draws what the uninterrupted run drew.
    const instance = yield* task.make(session.settings.task)
    const solver = session.method.build(session.settings.task, session.settings.method)
    const fresh = initialState(instance.x0, instance.y0, instance.optimizers, initialAdjoint(solver, instance.y0))
    const checkpoint = resume?.checkpoint
    const start = checkpoint === undefined
      ? fresh
      : yield* Checkpoint.restore(checkpoint, fresh, `${writer.dir}/${RunRecord.files.checkpoint}`)
    if (checkpoint !== undefined) rng.restore(checkpoint.rng)
    const trained = select(last)(solver)
    const train: LowerTraining = (x, z) => Effect.map(lowerSolution(trained, fullBatch(instance.problem), x, z), ({ y }) => y)
    yield* outerSteps(solver, instance.problem, start, instance.optimizers, Random.key(session.seed)).pipe(
      Stream.take(Math.max(0, session.total - start.t)),
      Stream.takeUntil(() => stop.signal !== undefined),
      Stream.runForEach((step) =>
        Effect.gen(function*() {
          const record = toRecord(step, yield* instance.metrics(step, train))
          records.push(record)
          // Recorded before its checkpoint, so steps.ndjson always reaches the last checkpoint.
          yield* writer.appendStep(record)
          // A signal ends the loop after this step: checkpoint it, so resume goes on from here.
          const checkpointed = (checkpointEvery > 0 && step.after.t % checkpointEvery === 0) || stop.signal !== undefined
          if (checkpointed) {
            yield* Checkpoint.write(writer.dir, yield* Checkpoint.capture(step.after, rng.state()))
          }
          if (checkpointed || step.after.t === session.total) {
            yield* Arrays.write(writer.dir, { x: step.after.x, z: step.after.z, y: step.solution.y })
          }
          yield* session.onStep?.(record, session.total) ?? Effect.void
        })
      )
    )
    return instance.summarize(records)
  }).pipe(Effect.scoped, tensorScope, Effect.provide(Rng.layer(session.seed)))
  const exit = yield* Effect.exit(loop)
  const wallMs = performance.now() - started
  const interrupted = Exit.isSuccess(exit) && stop.signal !== undefined && records.length < session.total
  yield* writer.finish({
    status: Exit.isFailure(exit) ? "failed" : interrupted ? "interrupted" : "completed",
    outerSteps: records.length,
    final: Exit.isSuccess(exit) ? exit.value : {},
    wallMs,
    ...(Exit.isFailure(exit) ? { error: describeFailure(exit.cause) } : {}),
    ...(resume === undefined ? {} : { resumedFrom: resume.checkpoint?.step ?? 0 }),
    ...(interrupted ? { signal: stop.signal } : {})
  }).pipe(
    // When the loop failed (a full disk, say), its error is the one to report: a summary that cannot
    // be written either leaves the record unfinished, which every reader and resume accept.
    Effect.catch((e) => Exit.isFailure(exit) ? Effect.void : Effect.fail(e))
  )
  if (interrupted) {
    yield* Console.error(
      `${stop.signal} after outer step ${records.length} of ${session.total}: checkpoint and summary written. ` +
        `Continue with: ${session.continueWith ?? `bilevel resume ${writer.dir}`}`
    )
  }
  const final = yield* exit
  return { final, outerSteps: records.length, wallMs, ...(interrupted ? { signal: stop.signal } : {}) }
})

/** Runs `request` on the provided backend; every tensor it allocates is released when it ends. */
export const run = Effect.fnUntraced(function*(request: RunRequest) {
  const backend = yield* Backend
  const { module, task } = yield* resolveTask(request.task, request.taskModule)
  const method = yield* resolveMethod(request.method)
  const settings = yield* resolveSettings(task, method, request.settings)
  const config = { ...settings.task, ...settings.method }
  const checkpointEvery = request.checkpointEvery ?? defaultCheckpointEvery
  yield* checkCombination(settings, request.settings)
  yield* checkMemory(task, method, settings, backend.name)
  const dir = request.out ?? defaultRunDir(task.name, method.name)
  yield* RunRecord.makeRunDirectory(dir)
  yield* RunLock.hold(dir)
  const writer = yield* RunRecord.start(dir, {
    task: task.name,
    method: method.name,
    label: request.label ?? method.name,
    backend: backend.name,
    threads: backend.threads,
    seed: request.seed,
    config,
    versions: versions(),
    startedAt: new Date().toISOString(),
    checkpointEvery,
    ...optional("taskModule", module),
    ...optional("definedInCode", definedInCode(request)),
    ...optional("command", request.command),
    ...optional("git", gitState())
  })
  const ended = yield* runSession({
    task,
    method,
    settings,
    seed: request.seed,
    writer,
    checkpointEvery,
    total: Math.min(settings.task.outerSteps, request.stopAfter ?? Infinity),
    onStep: request.onStep,
    handleSignals: request.handleSignals,
    continueWith: request.continueWith
  })
  return {
    task: task.name,
    method: method.name,
    backend: backend.name,
    seed: request.seed,
    config,
    runDir: writer.dir,
    ...ended
  } satisfies RunResult
}, Effect.scoped)

export interface ResumeRequest extends GivenInCode {
  /** A run directory written by {@link run}, interrupted or failed. */
  readonly dir: string
  readonly onStep?: RunRequest["onStep"]
  readonly handleSignals?: boolean | undefined
  readonly continueWith?: string | undefined
  /** Wait for another host's lock to go stale rather than refuse at once (a cluster runner taking a run over). */
  readonly waitForLock?: boolean | undefined
}

/**
 * Continues the run recorded in `dir` from its last checkpoint (from step 0 when it has none) on the
 * backend it was recorded on: steps recorded after the checkpoint are dropped, the loop goes on
 * from the checkpointed state and generator, and the summary is written when it ends. The steps it
 * appends are those the uninterrupted run would have recorded.
 */
export const resume = Effect.fnUntraced(function*(request: ResumeRequest) {
  const { dir } = request
  const backend = yield* Backend
  // Held before anything is read: a second resume (or the run itself, still going) is refused here.
  yield* RunLock.hold(dir, { waitForStale: request.waitForLock })
  const info = yield* RunRecord.readInfo(dir)
  const summary = yield* RunRecord.readSummary(dir)
  if (summary?.status === "completed") {
    return yield* new RunRecordError({ path: dir, problem: `is complete (${summary.outerSteps} outer steps); there is nothing to resume` })
  }
  if (info.backend !== backend.name) {
    return yield* new RunRecordError({
      path: dir,
      problem: `was recorded on the ${info.backend} backend, not ${backend.name}: its trajectory continues only on the backend it started on`
    })
  }
  const { method, task } = yield* recordedTaskAndMethod(dir, info, request)
  const settings = yield* resolveSettings(task, method, info.config)
  const checkpoint = yield* Checkpoint.read(dir)
  const steps = yield* RunRecord.readSteps(dir, { keep: checkpoint?.step ?? 0 })
  const writer = yield* RunRecord.reopen(dir, steps)
  const checkpointEvery = info.checkpointEvery ?? defaultCheckpointEvery
  const ended = yield* runSession({
    task,
    method,
    settings,
    seed: info.seed,
    writer,
    checkpointEvery,
    total: settings.task.outerSteps,
    onStep: request.onStep,
    handleSignals: request.handleSignals,
    continueWith: request.continueWith,
    resume: { steps, checkpoint }
  })
  return {
    task: task.name,
    method: method.name,
    backend: backend.name,
    seed: info.seed,
    config: { ...settings.task, ...settings.method },
    runDir: dir,
    resumedFrom: checkpoint?.step ?? 0,
    ...ended
  } satisfies RunResult
}, Effect.scoped)

/** tfjs tensors alive now (tests assert a run leaves this unchanged). */
export const liveTensors = (): number => tf.memory().numTensors
