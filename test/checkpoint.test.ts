/**
 * Checkpoint and resume: a run killed mid-way and resumed records the very steps the uninterrupted
 * run does — through the CLI with SIGKILL, in-process on a task that draws its data from the Rng,
 * and with optimizer states (Adam, Nesterov) in the checkpoint; damaged records are typed errors.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Layer, Schema, Stream } from "effect"
import { appendFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import * as Random from "../src/domain/Random.ts"
import { Rng } from "../src/domain/Rng.ts"
import { tensorScope } from "../src/domain/tensors.ts"
import * as Backend from "../src/runtime/Backend.ts"
import * as Checkpoint from "../src/runtime/checkpoint.ts"
import { firstStepDifference } from "../src/runtime/replay.ts"
import { resume, run, type RunRequest } from "../src/runtime/run.ts"
import * as RunRecord from "../src/runtime/RunRecord.ts"
import { iaGm } from "../src/solvers/methods.ts"
import { adam, nesterovSgd } from "../src/solvers/optimizers.ts"
import { initialState, type OuterState, outerSteps } from "../src/solvers/outerLoop.ts"
import { quadratic } from "../src/tasks/quadratic.ts"
import { start } from "./support/cli.ts"
import { vectorValue } from "./support/tf.ts"
import { scratchDir } from "./support/scratch.ts"

const scratch = scratchDir("checkpoint")
let dirs = 0
const out = (name: string) => path.join(scratch, `${name}-${dirs++}`)

const readCheckpoint = (dir: string): Checkpoint.Checkpoint | undefined => {
  try {
    return JSON.parse(readFileSync(path.join(dir, "checkpoint.json"), "utf8"))
  } catch {
    return undefined
  }
}

/** The uninterrupted run of `request`, with no checkpoints, read back. */
const reference = (request: Omit<RunRequest, "out">) =>
  run({ ...request, out: out("reference"), checkpointEvery: 0 }).pipe(Effect.andThen((r) => RunRecord.read(r.runDir)))

/** Asserts that two records hold the same steps (but for wall time) and the same final metrics. */
const assertSameRun = (resumed: RunRecord.RunRecord, uninterrupted: RunRecord.RunRecord) => {
  assert.isUndefined(firstStepDifference(resumed.steps, uninterrupted.steps))
  assert.strictEqual(resumed.summary?.status, "completed")
  assert.deepStrictEqual(resumed.summary?.final, uninterrupted.summary?.final)
}

const quadraticRequest = {
  task: "quadratic",
  method: "ia-gm",
  seed: 3,
  settings: { dimX: 4, dimY: 6, outerSteps: 24, innerSteps: 10 }
} as const

/** A quadratic run that dies after recording step 12 (its last checkpoint is at step 10). */
const crashedRun = Effect.gen(function*() {
  const dir = out("crashed")
  const exit = yield* Effect.exit(run({
    ...quadraticRequest,
    out: dir,
    checkpointEvery: 5,
    onStep: (record) => record.t === 12 ? Effect.die("simulated crash") : Effect.void
  }))
  assert.isTrue(exit._tag === "Failure")
  return dir
})

layer(Layer.merge(Backend.layer("cpu"), NodeServices.layer))("checkpoint and resume", (it) => {
  it.effect("a CLI run killed with SIGKILL and resumed records the uninterrupted run's trajectory", () =>
    Effect.gen(function*() {
      const dir = out("killed")
      const settings = ["--set", "outerSteps=40"]
      const killed = yield* Effect.promise(async () => {
        const { child, finished } = start(["run", "toy-nonconvex", "--method", "iaptt-gm", "--backend", "cpu", "--checkpoint-every", "5", "--out", dir, ...settings])
        while (child.exitCode === null && (readCheckpoint(dir)?.step ?? 0) < 10) await new Promise((r) => setTimeout(r, 20))
        child.kill("SIGKILL")
        return finished
      })
      assert.strictEqual(killed.signal, "SIGKILL", `the run ended before it could be killed: ${killed.stderr}`)
      const checkpoint = readCheckpoint(dir)!
      assert.isAtLeast(checkpoint.step, 10)
      assert.isBelow(checkpoint.step, 40)
      assert.isFalse(existsSync(path.join(dir, "summary.json")))
      // Whatever the kill left after the checkpoint, including a torn line, is dropped on resume.
      appendFileSync(path.join(dir, "steps.ndjson"), "{\"t\":99999,\"F\":")

      const resumed = yield* Effect.promise(() => start(["resume", dir, "--json"]).finished)
      assert.strictEqual(resumed.code, 0, resumed.stderr)
      const result = JSON.parse(resumed.stdout)
      assert.strictEqual(result.resumedFrom, checkpoint.step)
      assert.strictEqual(result.outerSteps, 40)

      const record = yield* RunRecord.read(dir)
      const uninterrupted = yield* reference({ task: "toy-nonconvex", method: "iaptt-gm", seed: 0, settings: { outerSteps: 40 } })
      assertSameRun(record, uninterrupted)
      assert.strictEqual(record.summary?.resumedFrom, checkpoint.step)
      assert.strictEqual(result.final.x, uninterrupted.summary?.final["x"])
      assert.deepStrictEqual(readdirSync(dir).sort(), [
        "checkpoint.json",
        "run.json",
        "steps.ndjson",
        "summary.json",
        "x.npy",
        "y.npy",
        "z.npy"
      ])
    }))

  it.effect("a task that draws its data from the Rng (quadratic) is rebuilt from the seed before the Rng is restored", () =>
    Effect.gen(function*() {
      const dir = yield* crashedRun
      const crashed = yield* RunRecord.read(dir)
      assert.strictEqual(crashed.steps.length, 13)
      assert.strictEqual(crashed.summary?.status, "failed")
      assert.strictEqual(readCheckpoint(dir)?.step, 10)

      const before = tf.memory().numTensors
      const result = yield* resume({ dir })
      assert.strictEqual(tf.memory().numTensors, before)
      assert.strictEqual(result.resumedFrom, 10)
      assert.strictEqual(result.outerSteps, 24)
      assertSameRun(yield* RunRecord.read(dir), yield* reference(quadraticRequest))
      assert.strictEqual(readCheckpoint(dir)?.step, 20)
    }))

  it.effect("a run with no checkpoint resumes from the start", () =>
    Effect.gen(function*() {
      const dir = out("no-checkpoint")
      yield* Effect.exit(run({
        ...quadraticRequest,
        out: dir,
        checkpointEvery: 0,
        onStep: (record) => record.t === 4 ? Effect.die("simulated crash") : Effect.void
      }))
      const result = yield* resume({ dir })
      assert.strictEqual(result.resumedFrom, 0)
      assertSameRun(yield* RunRecord.read(dir), yield* reference(quadraticRequest))
    }))

  it.effect("optimizer states (Adam for x, Nesterov SGD for z) survive a checkpoint bit for bit", () =>
    Effect.gen(function*() {
      const instance = yield* quadratic.make({ dimX: 4, dimY: 6, spread: 1, regularization: 0.01, outerSteps: 10, innerSteps: 10, innerLr: 0.2, outerLr: 0.05 } as never)
      const solver = iaGm.build({ innerSteps: 10, innerLr: 0.2 }, {})
      const optimizers = { x: adam(0.05), z: nesterovSgd(0.05, 0.9) }
      const fresh = () => initialState(instance.x0, instance.y0, optimizers)
      /** x_1 … x_{t+n} from `state`, and the checkpoint of the state after `checkpointAt` steps. */
      const trajectory = (state: OuterState, n: number, checkpointAt?: number) =>
        Effect.gen(function*() {
          const xs: Array<Array<number>> = []
          let saved: Checkpoint.Checkpoint | undefined
          yield* outerSteps(solver, instance.problem, state, optimizers, Random.key(0)).pipe(
            Stream.take(n),
            Stream.runForEach((step) =>
              Effect.gen(function*() {
                xs.push(vectorValue(step.after.x), vectorValue(step.after.z))
                if (step.after.t === checkpointAt) saved = yield* Checkpoint.capture(step.after, [1, 2, 3, 4])
              })
            )
          )
          return { xs, saved }
        })
      const whole = yield* trajectory(fresh(), 10)
      const first = yield* trajectory(fresh(), 5, 5)
      const saved = Schema.decodeUnknownSync(Checkpoint.Checkpoint)(JSON.parse(JSON.stringify(first.saved)))
      assert.strictEqual(saved.xOptimizer.length, 2, "adam = chain(scaleByAdam, scale): two member states")
      const restored = yield* Checkpoint.restore(saved, fresh(), "checkpoint.json")
      assert.strictEqual(restored.t, 5)
      const second = yield* trajectory(restored, 5)
      assert.deepStrictEqual([...first.xs, ...second.xs], whole.xs)

      const wrongShape = { ...saved, x: { ...saved.x, shape: [5] } }
      const error = yield* Effect.flip(Checkpoint.restore(wrongShape, fresh(), "checkpoint.json"))
      assert.include(error.message, "does not fit this run: x is float32[5], this run's is float32[4]")
      const wrongTree = { ...saved, zOptimizer: [] }
      assert.include((yield* Effect.flip(Checkpoint.restore(wrongTree, fresh(), "c"))).message, "zOptimizer has 0 entries")
    }).pipe(Effect.scoped, tensorScope, Effect.provide(Rng.layer(0))))

  it.effect("completed, corrupt, truncated and mismatched records are typed errors, never silently resumed", () =>
    Effect.gen(function*() {
      const done = yield* run({ task: "toy-nonconvex", method: "rhg", seed: 0, settings: { outerSteps: 3 }, out: out("done") })
      const complete = yield* Effect.flip(resume({ dir: done.runDir }))
      assert.strictEqual(complete._tag, "RunRecordError")
      assert.include(complete.message, "nothing to resume")

      const corrupt = yield* crashedRun
      writeFileSync(path.join(corrupt, "checkpoint.json"), "{\"format\":1,\"step\":")
      const corruptError = yield* Effect.flip(resume({ dir: corrupt }))
      assert.strictEqual(corruptError._tag, "RunRecordError")
      assert.include(corruptError.message, "checkpoint.json")

      const alien = yield* crashedRun
      const saved = readCheckpoint(alien)!
      writeFileSync(path.join(alien, "checkpoint.json"), JSON.stringify({ ...saved, rng: [1, 2] }))
      assert.include((yield* Effect.flip(resume({ dir: alien }))).message, "is not a checkpoint")

      const truncated = yield* crashedRun
      const lines = readFileSync(path.join(truncated, "steps.ndjson"), "utf8").split("\n")
      writeFileSync(path.join(truncated, "steps.ndjson"), lines.slice(0, 7).join("\n") + "\n")
      const truncatedError = yield* Effect.flip(resume({ dir: truncated }))
      assert.include(truncatedError.message, "holds 7 steps, fewer than the 10 its checkpoint covers")

      const elsewhere = yield* crashedRun
      const info = JSON.parse(readFileSync(path.join(elsewhere, "run.json"), "utf8"))
      writeFileSync(path.join(elsewhere, "run.json"), JSON.stringify({ ...info, backend: "wasm" }))
      assert.include((yield* Effect.flip(resume({ dir: elsewhere }))).message, "recorded on the wasm backend")
      assert.isFalse(readdirSync(elsewhere).some((f) => f.endsWith(".tmp")))
    }))
})
