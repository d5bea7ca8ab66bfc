/**
 * The library as code uses it, in process: the public entry's promise facade on a built-in task (its
 * hypergradient against the closed form, its learned x against the saved .npy), a custom `Method`
 * value, a `Task` value from `defineTask`; task modules that cannot serve get a typed error naming
 * what to do; and `export` writes every step at full precision.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, FileSystem, Schema } from "effect"
import { cpSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { Arrays, check, commonSettings, defineTask, type Method, optimize, Solver, gradientDescent, reverse } from "effect-bilevel"
import * as Backend from "../src/runtime/Backend.ts"
import { exportSteps } from "../src/runtime/export.ts"
import { replay } from "../src/runtime/replay.ts"
import { resume } from "../src/runtime/run.ts"
import { resolveTask } from "../src/runtime/taskModule.ts"
import { scratchDir } from "./support/scratch.ts"

const scratch = scratchDir("library")
const file = (name: string, text: string) => {
  const at = path.join(scratch, name)
  writeFileSync(at, text)
  return at
}

/** f = ½‖y − x‖², F = ½‖y − 1‖²: y*(x) = x, dF/dx = x − 1 in closed form. */
const tracking = defineTask({
  name: "tracking",
  description: "y tracks x; F pulls y to 1",
  settings: Schema.Struct(commonSettings({ outerSteps: 30, innerSteps: 40, innerLr: 0.5, outerLr: 0.5 })),
  make: () =>
    Effect.succeed({
      problem: {
        lower: (x, y) => tf.mul(0.5, tf.sum(tf.square(tf.sub(y, x)))),
        upper: (_x, y) => tf.mul(0.5, tf.sum(tf.square(tf.sub(y, 1))))
      },
      x0: tf.tensor1d([3, -2]),
      y0: tf.zeros([2]),
      exactHypergradient: (x) => x.map((xi) => xi - 1)
    })
})

const plainDescent: Method = {
  name: "plain-descent",
  description: "K gradient steps, reverse mode",
  settings: Schema.Struct({}),
  build: ({ innerLr, innerSteps }) => Solver.make(gradientDescent({ lr: innerLr })).pipe(Solver.take(innerSteps), Solver.hypergradient(reverse()))
}

describe("the promise facade", { timeout: 60_000 }, () => {
  it("check: a preset's hypergradient on a built-in task, against the closed form", async () => {
    const result = await check("quadratic", { method: "ls", settings: { cgIters: 60 } })
    assert.strictEqual(result.reference, "closed-form")
    assert.isBelow(result.relError, 1e-5)
  })

  it("optimize: a defineTask value and a custom Method reach x* = 1, and return what the run saved", async () => {
    const x0 = await check(tracking, { method: plainDescent })
    assert.strictEqual(x0.reference, "closed-form")
    assert.isBelow(x0.relError, 1e-5)
    const out = path.join(scratch, "tracking")
    const result = await optimize(tracking, { method: plainDescent, out })
    assert.strictEqual(result.task, "tracking")
    assert.strictEqual(result.method, "plain-descent")
    for (const xi of result.x) assert.approximately(xi, 1, 1e-4)
    assert.lengthOf(result.F, 30)
    const saved = await Effect.runPromise(Arrays.read(out, "x").pipe(Effect.provide(NodeServices.layer)))
    assert.deepStrictEqual(saved, { values: [...result.x], shape: [2] })
  })

  it("replay and resume of a run whose task and method were values in code: refused by name alone, identical when handed them", async () => {
    const out = path.join(scratch, "tracking")
    const onCpu = <A, E>(program: Effect.Effect<A, E, Backend.Backend | FileSystem.FileSystem>) =>
      Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(Backend.layer("cpu")), Effect.provide(NodeServices.layer)))
    const byName = await onCpu(Effect.flip(replay({ dir: out })))
    assert.strictEqual(byName._tag, "RunRecordError")
    assert.include(byName.message, "the task \"tracking\" given as a value in code")
    assert.include(byName.message, "{ dir, task }")
    const taskOnly = await onCpu(Effect.flip(replay({ dir: out, task: tracking })))
    assert.include(taskOnly.message, "the method \"plain-descent\" given as a value in code")
    const wrong = await onCpu(Effect.flip(replay({ dir: out, task: { ...tracking, name: "other" }, method: plainDescent })))
    assert.include(wrong.message, "was run with the task \"tracking\", not \"other\"")
    const report = await onCpu(replay({ dir: out, task: tracking, method: plainDescent }))
    assert.isTrue(report.identical)
    assert.strictEqual(report.replayedSteps, 30)
    const cut = path.join(scratch, "tracking-cut")
    cpSync(out, cut, { recursive: true })
    rmSync(path.join(cut, "summary.json"))
    const refused = await onCpu(Effect.flip(resume({ dir: cut })))
    assert.include(refused.message, "given as a value in code")
    const resumed = await onCpu(resume({ dir: cut, task: tracking, method: plainDescent }))
    assert.strictEqual(resumed.outerSteps, 30)
    assert.deepStrictEqual(readFileSync(path.join(cut, "x.npy")), readFileSync(path.join(out, "x.npy")))
  })
})

describe("task modules", () => {
  const failure = (reference: string, module?: string) => Effect.runPromise(Effect.flip(resolveTask(reference, module)))

  it("a missing file, a module with no task, several tasks without a name, and an unknown name", async () => {
    const missing = await failure("./nowhere/ridge.ts")
    assert.strictEqual(missing._tag, "TaskModuleError")
    assert.include(missing.message, "does not exist")
    const empty = await failure(file("empty.js", "export const answer = 42\n"))
    assert.include(empty.message, "exports no task")
    assert.include(empty.message, "defineTask")
    const source = (name: string) =>
      `export const ${name} = { name: "${name}", description: "", settings: (await import("effect")).Schema.Struct({}), make: () => null }\n`
    const two = file("two.js", source("first") + source("second"))
    const several = await failure(two)
    assert.include(several.message, "exports 2 tasks (first, second)")
    assert.include(several.message, "--task-module")
    const unknown = await failure("third", two)
    assert.strictEqual(unknown._tag, "UnknownName")
    assert.include(unknown.message, "first, second")
    const found = await Effect.runPromise(resolveTask("second", two))
    assert.strictEqual(found.task.name, "second")
    assert.strictEqual(found.module, two)
  })

  it("a module that throws says so, with the first line of its error", async () => {
    const broken = await failure(file("broken.js", "throw new Error(\"no data here\")\n"))
    assert.include(broken.message, "cannot be loaded: no data here")
  })
})

describe("export", () => {
  it("CSV: one column per field, nested ones dotted, numbers at full precision; JSON: the records", () => {
    const steps = [
      { t: 0, F: 0.1 + 0.2, kbar: 3, hypergradNorm: 1 / 3, ms: 1.5, cost: { innerSteps: 3, reverseSteps: 3, hvps: 0, peakBytes: 64 } },
      { t: 1, F: 1e-17, kbar: 2, hypergradNorm: Math.PI, ms: 2, cost: { innerSteps: 3, reverseSteps: 2, hvps: 0, peakBytes: 64 }, note: "a, \"b\"" }
    ]
    const csv = exportSteps(steps, "csv").split("\r\n")
    assert.strictEqual(csv[0], "t,F,kbar,hypergradNorm,ms,cost.innerSteps,cost.reverseSteps,cost.hvps,cost.peakBytes,note")
    assert.strictEqual(csv[1], "0,0.30000000000000004,3,0.3333333333333333,1.5,3,3,0,64,")
    assert.strictEqual(csv[2], "1,1e-17,2,3.141592653589793,2,3,2,0,64,\"a, \"\"b\"\"\"")
    assert.deepStrictEqual(JSON.parse(exportSteps(steps, "json")), steps)
  })
})
