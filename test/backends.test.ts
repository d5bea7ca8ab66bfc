/**
 * Backend layers. `auto` picks cpu or wasm from the problem's size and the run record names the one
 * it chose; native backends that are not installed fail with a typed error that says how to get
 * them; webgpu — where its packages and a Vulkan device exist (mesa's software lavapipe will do) —
 * gets every second derivative of the table right, runs the solvers and whole runs with cpu's
 * results (every framework read is asynchronous), and a synchronous read of a user's own fails with
 * an error that says why. The wasm layer's own Slice and SplitV kernels give what cpu's stock ones give.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import { Cause, Effect, Exit, type Layer, Schema } from "effect"
import { existsSync, readFileSync } from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"
import type { BilevelProblem } from "../src/domain/Problem.ts"
import * as Random from "../src/domain/Random.ts"
import { Rng } from "../src/domain/Rng.ts"
import { readVector } from "../src/domain/tensors.ts"
import { gradientDescent } from "../src/dynamics/Dynamics.ts"
import { backendLayer, lowerLevelSize } from "../src/runtime/autoBackend.ts"
import * as Backend from "../src/runtime/Backend.ts"
import { run } from "../src/runtime/run.ts"
import { implicit, stationarity } from "../src/solvers/implicit.ts"
import { conjugateGradient } from "../src/solvers/linearSolvers.ts"
import { hypergradientAt } from "../src/solvers/metaBatch.ts"
import { rhg } from "../src/solvers/methods.ts"
import * as Solver from "../src/solvers/Solver.ts"
import { fewShotInstance, fewShotSettings } from "../src/tasks/fewShot.ts"
import { syntheticSource } from "./support/fewShotSource.ts"
import { secondOrderCases, tolerance } from "./support/secondOrderCases.ts"
import { smoothProblem } from "./support/smoothProblem.ts"
import { finiteDifferenceGradient, relativeError, vectorValue } from "./support/tf.ts"
import { scratchDir } from "./support/scratch.ts"

const files = scratchDir("backends")

const installed = (pkg: string) => {
  try {
    createRequire(import.meta.url).resolve(pkg)
    return true
  } catch {
    return false
  }
}

/** Why webgpu cannot be tested here, or undefined when it can. */
const webgpuUnavailable = await (async (): Promise<string | undefined> => {
  if (!installed("webgpu") || !installed("@tensorflow/tfjs-backend-webgpu")) {
    return "packages webgpu and @tensorflow/tfjs-backend-webgpu not installed (.ci/run installs them)"
  }
  const dawn = await import("webgpu" as string) as { create: (flags: Array<string>) => { requestAdapter: () => Promise<unknown> } }
  return (await dawn.create([]).requestAdapter()) == null
    ? "no Vulkan device (install a GPU driver, or mesa-vulkan-drivers ≥ 25 for a software one)"
    : undefined
})()

/** The Backend service a layer provides. */
const backendOf = <E, R>(layer: Layer.Layer<Backend.Backend, E, R>) =>
  Effect.provide(Effect.gen(function*() {
    return yield* Backend.Backend
  }), layer)

const request = (task: string, settings: Record<string, unknown> = {}) => ({ task, method: "rhg", seed: 0, settings })

describe("auto backend", () => {
  it("picks cpu below the threshold and wasm from it on", () => {
    assert.strictEqual(Backend.resolveAuto(1), "cpu")
    assert.strictEqual(Backend.resolveAuto(Backend.autoThreshold - 1), "cpu")
    assert.strictEqual(Backend.resolveAuto(Backend.autoThreshold), "wasm")
    assert.strictEqual(Backend.resolveAuto(7850), "wasm")
  })

  it.effect("sizes the problem the run would build, and provides the backend it picks", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* lowerLevelSize(request("toy-nonconvex")), 1)
      assert.strictEqual(yield* lowerLevelSize(request("quadratic", { dimY: 100 })), 100)
      assert.strictEqual((yield* backendOf(backendLayer("auto", request("toy-nonconvex")))).name, "cpu")
      assert.strictEqual((yield* backendOf(backendLayer("auto", request("quadratic", { dimY: 100 })))).name, "wasm")
      assert.strictEqual((yield* backendOf(backendLayer("cpu", request("quadratic", { dimY: 100 })))).name, "cpu")
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("the run record names the backend auto chose", () =>
    Effect.gen(function*() {
      const out = path.join(files, "auto", "run")
      const r = request("toy-nonconvex", { outerSteps: 2, innerSteps: 3 })
      const result = yield* run({ ...r, out }).pipe(Effect.provide(backendLayer("auto", r)))
      assert.strictEqual(result.backend, "cpu")
      assert.strictEqual(JSON.parse(readFileSync(path.join(out, "run.json"), "utf8")).backend, "cpu")
    }).pipe(Effect.provide(NodeServices.layer)))
})

describe("wasm Slice and SplitV (src/runtime/wasmKernels.ts)", () => {
  /** Every slice and split of a few tensors, read back: ranks 1–4, contiguous or not, three dtypes, empty parts. */
  const cases = () => {
    const out: Array<ArrayLike<number>> = []
    const read = (t: tf.Tensor | Array<tf.Tensor>) => [t].flat().forEach((p) => out.push(p.dataSync()))
    tf.tidy(() => {
      for (const shape of [[11], [5, 7], [3, 4, 5], [2, 3, 2, 4]]) {
        for (const dtype of ["float32", "int32", "bool"] as const) {
          const size = shape.reduce((a, b) => a * b, 1)
          const x = tf.tensor(Array.from({ length: size }, (_, i) => (dtype === "bool" ? Number(i % 3 === 0) : i * 1.5 - 7)), shape, dtype)
          const begin = shape.map((d) => Math.floor(d / 3))
          read(tf.slice(x, begin))
          read(tf.slice(x, begin, shape.map((d, i) => Math.max(0, d - begin[i]! - 1))))
          read(tf.slice(x, shape.map(() => 0), [1, ...shape.slice(1)]))
          read(tf.slice(x, begin, shape.map((_, i) => (i === 0 ? 0 : -1))))
          for (let axis = 0; axis < shape.length; axis++) {
            const d = shape[axis]!
            read(tf.split(x, [Math.floor(d / 2), 0, d - Math.floor(d / 2)], axis))
          }
        }
      }
    })
    return out.map((a) => Array.from(a))
  }

  it.effect("give the values cpu's stock kernels give", () =>
    Effect.gen(function*() {
      const expected = yield* Effect.sync(cases).pipe(Effect.provide(Backend.layer("cpu")))
      const actual = yield* Effect.sync(cases).pipe(Effect.provide(Backend.layer("wasm")))
      assert.deepStrictEqual(actual, expected)
    }))
})

describe("native backends", () => {
  for (const [name, pkg] of [["tensorflow", "@tensorflow/tfjs-node"], ["tensorflow-gpu", "@tensorflow/tfjs-node-gpu"]] as const) {
    it.effect.skipIf(installed(pkg))(`${name} without ${pkg} is a BackendUnavailable that says how to install it`, () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(backendOf(Backend.layer(name)))
        assert.strictEqual(error._tag, "BackendUnavailable")
        assert.include(error.message, `npm install ${pkg}@4.22.0`)
      }))
  }
})

describe.skipIf(webgpuUnavailable !== undefined)(
  `webgpu${webgpuUnavailable === undefined ? "" : ` (skipped: ${webgpuUnavailable})`}`,
  () => {
    /** Runs `f` on webgpu with every kernel on the GPU (tfjs forwards small ops to its CPU kernels by default). */
    const onGpu = <A>(f: () => Promise<A>) =>
      Effect.promise(async () => {
        tf.env().set("WEBGPU_CPU_FORWARD", false)
        try {
          return await f()
        } finally {
          tf.env().set("WEBGPU_CPU_FORWARD", true)
        }
      }).pipe(Effect.provide(Backend.layer("webgpu")))

    // Two GD steps on each objective, then d⟨C, Z₂⟩/dZ₀: the Hessians of every op (as in secondOrder.test.ts).
    const cotangent = Array.from({ length: 12 }, (_, i) => Math.sin(3 * i + 1))
    const outer = (objective: (z: tf.Tensor) => tf.Scalar) => (z: tf.Tensor): tf.Scalar => {
      const step = (zk: tf.Tensor) => tf.sub(zk, tf.mul(0.3, tf.grad(objective)(zk)))
      return tf.sum(tf.mul(tf.tensor2d(cotangent, [3, 4]), step(step(z))))
    }
    const supported = secondOrderCases.filter((c) => c.fixed === "correct")

    it.effect("every supported op's second derivative agrees with finite differences (taken on cpu)", () =>
      Effect.gen(function*() {
        const references = yield* Effect.sync(() =>
          supported.map((c) => tf.tidy(() => finiteDifferenceGradient(outer(c.objective), tf.tensor2d([...c.start], [3, 4]), 1e-2)))
        ).pipe(Effect.provide(Backend.layer("cpu")))
        const autodiff = yield* onGpu(() =>
          Promise.all(supported.map(async (c) => {
            const gradient = tf.tidy(() => tf.grad(outer(c.objective))(tf.tensor2d([...c.start], [3, 4])))
            const values = await gradient.data()
            gradient.dispose()
            return values
          }))
        )
        supported.forEach((c, i) => assert.isBelow(relativeError(autodiff[i]!, references[i]!), tolerance, c.name))
      }))

    it.effect("a small RHG hypergradient, unrolled and differentiated on the GPU, matches the solver's on cpu", () =>
      Effect.gen(function*() {
        const [K, lr] = [10, 0.3]
        const pipeline = (problem: BilevelProblem, y0: tf.Tensor) => (x: tf.Tensor): tf.Scalar => {
          let y = y0
          for (let k = 0; k < K; k++) y = tf.sub(y, tf.mul(lr, problem.lowerGradient!(x, y)))
          return problem.upper(x, y) as tf.Scalar
        }
        const expected = yield* Effect.gen(function*() {
          const { problem, x0, y0 } = smoothProblem({ dimX: 3, dimY: 6 })
          const solution = yield* Solver.solve(Solver.make(gradientDescent({ lr })).pipe(Solver.take(K)), problem, x0, y0)
          return vectorValue(solution.gradX)
        }).pipe(Effect.provide(Backend.layer("cpu")))
        const actual = yield* onGpu(async () => {
          const { problem, x0, y0 } = smoothProblem({ dimX: 3, dimY: 6 })
          const gradient = tf.tidy(() => tf.grad(pipeline(problem, y0))(x0))
          return Array.from(await gradient.data())
        })
        assert.isBelow(relativeError(actual, expected), 1e-5)
      }))

    it.effect("solvers run on the GPU: RHG, IAPTT-GM (a PTT score read per step) and LS stopped by a CG tolerance give cpu's hypergradients", () =>
      Effect.gen(function*() {
        const solvers = [
          Solver.make(gradientDescent({ lr: 0.3 })).pipe(Solver.take(12)),
          Solver.make(gradientDescent({ lr: 0.3 })).pipe(Solver.auxiliaryInit, Solver.take(12), Solver.truncatePessimistic),
          Solver.make(gradientDescent({ lr: 0.3 })).pipe(
            Solver.take(60),
            Solver.hypergradient(implicit(stationarity, conjugateGradient({ iterations: 40, tolerance: 1e-6 })))
          )
        ]
        const solveAll = Effect.forEach(solvers, (solver) =>
          Effect.gen(function*() {
            const { problem, x0, y0 } = smoothProblem({ dimX: 3, dimY: 6 })
            const s = yield* Solver.solve(solver, problem, x0, y0)
            return { x: yield* readVector(s.gradX), z: yield* readVector(s.gradZ), kbar: s.kbar, upper: s.upper }
          }))
        const expected = yield* solveAll.pipe(Effect.provide(Backend.layer("cpu")))
        tf.env().set("WEBGPU_CPU_FORWARD", false)
        const actual = yield* solveAll.pipe(
          Effect.provide(Backend.layer("webgpu")),
          Effect.ensuring(Effect.sync(() => tf.env().set("WEBGPU_CPU_FORWARD", true)))
        )
        expected.forEach((e, i) => {
          assert.strictEqual(actual[i]!.kbar, e.kbar, `solver ${i}: k̄`)
          assert.isBelow(relativeError(actual[i]!.x, e.x), 1e-5, `solver ${i}: x`)
          if (e.z.some((v) => v !== 0)) assert.isBelow(relativeError(actual[i]!.z, e.z), 1e-5, `solver ${i}: z`)
          assert.closeTo(actual[i]!.upper, e.upper, 1e-5 * Math.max(1, Math.abs(e.upper)))
        })
      }))

    it.effect("a whole run (metrics, checkpoints, record) on webgpu writes cpu's trajectory", () =>
      Effect.gen(function*() {
        const scratch = path.join(files, "webgpu")
        const r = request("toy-llc", { outerSteps: 4, n: 10 })
        const steps = (backend: "cpu" | "webgpu") =>
          Effect.map(run({ ...r, out: path.join(scratch, backend), checkpointEvery: 2 }).pipe(Effect.provide(Backend.layer(backend))), () =>
            readFileSync(path.join(scratch, backend, "steps.ndjson"), "utf8").trim().split("\n").map((line) =>
              JSON.parse(line) as Record<string, number>
            ))
        const cpu = yield* steps("cpu")
        tf.env().set("WEBGPU_CPU_FORWARD", false)
        const gpu = yield* steps("webgpu").pipe(Effect.ensuring(Effect.sync(() => tf.env().set("WEBGPU_CPU_FORWARD", true))))
        assert.strictEqual(gpu.length, 4)
        gpu.forEach((step, t) => {
          for (const key of ["F", "hypergradNorm", "xError", "yError"]) {
            assert.closeTo(step[key]!, cpu[t]![key]!, 1e-4 * Math.max(1, Math.abs(cpu[t]![key]!)), `step ${t} ${key}`)
          }
        })
        assert.isTrue(existsSync(path.join(scratch, "webgpu", "checkpoint.json")))
      }).pipe(Effect.provide(NodeServices.layer)))

    it.effect("the few-shot step (a tiny ConvNet-4 meta-batch: hand-written backbone passes, head reverse pass) gives cpu's hypergradient", () =>
      Effect.gen(function*() {
        const settings = Schema.decodeUnknownSync(fewShotSettings)({
          trainClasses: 3, validationClasses: 0, testClasses: 2, ways: 2, shots: 1, queries: 2, metaBatch: 2, width: 3,
          innerSteps: 3, innerLr: 0.5, evalEvery: 0
        })
        const hypergradient = Effect.gen(function*() {
          const instance = yield* fewShotInstance(syntheticSource({ classes: 5, perClass: 4 }), settings)
          const s = yield* hypergradientAt(rhg.build(settings, { warmStart: false }), instance.problem, instance.x0, instance.y0, Random.key(3))
          return { x: yield* readVector(s.gradX), upper: s.upper }
        }).pipe(Effect.scoped, Effect.provide(Rng.layer(4)))
        const expected = yield* hypergradient.pipe(Effect.provide(Backend.layer("cpu")))
        // The flag exists once the webgpu backend has loaded.
        const actual = yield* Effect.sync(() => tf.env().set("WEBGPU_CPU_FORWARD", false)).pipe(
          Effect.andThen(hypergradient),
          Effect.ensuring(Effect.sync(() => tf.env().set("WEBGPU_CPU_FORWARD", true))),
          Effect.provide(Backend.layer("webgpu"))
        )
        assert.isBelow(relativeError(actual.x, expected.x), 1e-4)
        assert.closeTo(actual.upper, expected.upper, 1e-5)
      }), 120_000)

    it.effect("a synchronous read of one's own still says why it fails", () =>
      Effect.gen(function*() {
        // A tensor a GPU kernel made (an uploaded one keeps its host copy).
        tf.env().set("WEBGPU_CPU_FORWARD", false)
        const exit = yield* Effect.sync(() => vectorValue(tf.add(tf.tensor1d([1, 2, 3]), 1))).pipe(
          Effect.provide(Backend.layer("webgpu")),
          Effect.ensuring(Effect.sync(() => tf.env().set("WEBGPU_CPU_FORWARD", true))),
          Effect.exit
        )
        assert.isTrue(Exit.isFailure(exit))
        if (Exit.isFailure(exit)) assert.include(Cause.pretty(exit.cause), "cannot read a tensor synchronously in Node")
      }))
  }
)
