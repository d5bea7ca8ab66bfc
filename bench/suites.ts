/**
 * The benchmark suites. Each runs on the backend provided to it and returns rows of results; nothing
 * here asserts (the tests do): it measures.
 *
 * - hyper-cleaning: time per hypergradient (`solve`) and per forward LL trajectory (`upperAt`) for
 *   RHG, IAPTT-GM, LS and NS (and any other method by `--method`), linear and MLP nets, K = 50; each
 *   both with the task's closed-form Hessian-vector products (hand-written step VJPs, implicit
 *   products) and by autodiff, and how far apart their hypergradients are.
 * - checkpointing: plain reverse against `reverse({ checkpointEvery: c })`, time and peak memory.
 * - truncation: the reverse pass of IAPTT-GM (auxiliary init, PTT) at forced k̄ = K/4, K/2, K.
 * - toys: toy-nonconvex, quadratic and toy-llc with their default settings.
 * - crossover: RHG on the quadratic task as its dimension grows: where wasm overtakes cpu (`auto`).
 * - profile: where one hyper-cleaning hypergradient spends its time (kernels, dispatch, host reads).
 * - fewshot: one meta-training outer step's hypergradient (ConvNet-4, 32 channels, 5-way 1-shot, 15
 *   queries, meta-batch 4, K = 10) at 28×28×1 (FashionMNIST, or synthetic) and 84×84×3 (synthetic),
 *   and 600 test episodes' accuracy.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect, FileSystem, Schema, type Scope, Stream } from "effect"
import type { Cost } from "../src/domain/Cost.ts"
import type { DatasetError, HypergradientFailed, InvalidSolver } from "../src/domain/errors.ts"
import type { BilevelProblem, Vector } from "../src/domain/Problem.ts"
import { Rng } from "../src/domain/Rng.ts"
import { readVector, tensorScope } from "../src/domain/tensors.ts"
import { iterateTensors, LowerLevel } from "../src/dynamics/Iterate.ts"
import { unroll } from "../src/dynamics/iterates.ts"
import type { Selection } from "../src/dynamics/selection.ts"
import type { Method } from "../src/solvers/methods.ts"
import * as Methods from "../src/solvers/methods.ts"
import { reverse } from "../src/solvers/reverse.ts"
import * as Solver from "../src/solvers/Solver.ts"
import { hypergradientAt } from "../src/solvers/metaBatch.ts"
import { stepKey } from "../src/solvers/outerLoop.ts"
import { fewShotInstance, fewShotSettings } from "../src/tasks/fewShot.ts"
import type { ClassImages } from "../src/tasks/fewShot/episodes.ts"
import { idxSource } from "../src/tasks/fewShot/sources.ts"
import { hyperCleaning } from "../src/tasks/hyperCleaning.ts"
import { quadratic } from "../src/tasks/quadratic.ts"
import type { Task, TaskInstance } from "../src/tasks/Task.ts"
import { toyLlc } from "../src/tasks/toyLlc.ts"
import { toyNonconvex } from "../src/tasks/toyNonconvex.ts"
import * as Random from "../src/domain/Random.ts"
import { make as makeRandom } from "../src/domain/Rng.ts"
import { loadAverage } from "./machine.ts"
import { type Repetitions, stats, type Timing, timed, timing } from "./measure.ts"

export interface Row {
  readonly suite: string
  readonly backend: string
  readonly task: string
  readonly method: string
  /** What distinguishes this row within its suite (net, VJP path, c, forced k̄, dimension, …). */
  readonly variant: Record<string, string | number>
  readonly hypergradient?: Timing
  readonly forward?: Timing
  /** median hypergradient time / median forward time (wall and CPU). */
  readonly ratio?: { readonly wall: number; readonly cpu: number }
  readonly kbar?: number
  readonly cost?: Cost
  /** Tensors alive after each repetition, above the count before the first (0: nothing leaked). */
  readonly tensorsAfter?: ReadonlyArray<number>
  readonly loadAverage: ReadonlyArray<number>
  readonly extra?: Record<string, unknown>
}

export interface Options {
  readonly backend: string
  readonly repetitions: Repetitions
  /** Directory of the MNIST-format training file hyper-cleaning draws its splits from. */
  readonly dataDir: string
  readonly nets: ReadonlyArray<"linear" | "mlp">
  readonly methods: ReadonlyArray<string> | undefined
}

type Needs = Rng | Scope.Scope | FileSystem.FileSystem

const instanceOf = (task: Task, overrides: Record<string, unknown>) =>
  Effect.gen(function*() {
    const settings = yield* Schema.decodeUnknownEffect(task.settings)(overrides).pipe(Effect.orDie)
    const instance: TaskInstance = yield* task.make(settings)
    return { settings, instance }
  })

/**
 * The problem without its closed-form Hessian-vector products: reverse mode then takes step VJPs,
 * and implicit strategies their products, by autodiff.
 */
export const withoutHvp = (problem: BilevelProblem): BilevelProblem => {
  const { lowerHessianVectorProduct: _, upperHessianVectorProduct: _u, ...rest } = problem
  return rest
}

const release = (s: Solver.Solution) => tf.dispose([s.gradX, s.gradZ, s.y])

/**
 * `warmup` + `reps` pairs of (forward trajectory, hypergradient), interleaved so that both see the
 * same load. The last hypergradient (gradX, to the host) is returned for comparisons.
 */
const measurePair = (solver: Solver.Bounded, problem: BilevelProblem, x0: Vector, y0: Vector, repetitions: Repetitions) =>
  Effect.gen(function*() {
    for (let i = 0; i < repetitions.warmup; i++) {
      yield* Solver.upperAt(solver, problem, x0, y0)
      release(yield* Solver.solve(solver, problem, x0, y0))
    }
    const baseline = tf.memory().numTensors
    const forward = []
    const hypergradient = []
    const tensorsAfter: Array<number> = []
    let last: { readonly gradX: ReadonlyArray<number>; readonly kbar: number; readonly cost: Cost } | undefined
    for (let i = 0; i < repetitions.reps; i++) {
      forward.push(yield* timed(Solver.upperAt(solver, problem, x0, y0)))
      const sample = yield* timed(Solver.solve(solver, problem, x0, y0))
      hypergradient.push(sample)
      last = { gradX: yield* readVector(sample.value.gradX), kbar: sample.value.kbar, cost: sample.value.cost }
      release(sample.value)
      tensorsAfter.push(tf.memory().numTensors - baseline)
    }
    const f = timing(forward)
    const h = timing(hypergradient)
    return {
      forward: f,
      hypergradient: h,
      ratio: { wall: h.wallMs.median / f.wallMs.median, cpu: h.cpuMs.median / f.cpuMs.median },
      tensorsAfter,
      ...last!
    }
  })

const relativeError = (a: ReadonlyArray<number>, b: ReadonlyArray<number>) => {
  let diff = 0
  let size = 0
  a.forEach((ai, i) => {
    diff += (ai - b[i]!) ** 2
    size += b[i]! ** 2
  })
  return Math.sqrt(diff) / Math.max(Math.sqrt(size), 1e-30)
}

const methodByName = (name: string): Method => Methods.methods.find((m) => m.name === name)!

/** Method settings the benchmarks use (the presets' defaults). */
const methodSettings = (method: Method) => Schema.decodeUnknownSync(method.settings)({}) as Record<string, unknown>

const row = (fields: Omit<Row, "loadAverage">): Row => ({ ...fields, loadAverage: loadAverage() })

const log = (r: Row) => {
  const h = r.hypergradient
  const f = r.forward
  const show = (t: Timing | undefined) => t === undefined ? "-" : `${t.wallMs.median.toFixed(0)} ms wall / ${t.cpuMs.median.toFixed(0)} ms cpu`
  console.error(
    `  ${r.suite} ${r.backend} ${r.task} ${r.method} ${JSON.stringify(r.variant)}: hypergradient ${show(h)}, forward ${show(f)}` +
      (r.kbar === undefined ? "" : `, k̄ ${r.kbar}`) + `, load ${r.loadAverage[0]}`
  )
  return r
}

/** What {@link measurePair} measured. */
type Measured = Effect.Success<ReturnType<typeof measurePair>>

/** A row of `measured`: its timings, ratio, k̄, cost and tensors left, logged as it is made. */
const measuredRow = (fields: Pick<Row, "suite" | "backend" | "task" | "method" | "variant" | "extra">, m: Measured) =>
  log(row({
    ...fields,
    forward: m.forward,
    hypergradient: m.hypergradient,
    ratio: m.ratio,
    kbar: m.kbar,
    cost: m.cost,
    tensorsAfter: m.tensorsAfter
  }))

const cleaningSettings = (options: Options, net: string) => ({ dataDir: options.dataDir, net, innerSteps: 50 })

/** Hyper-cleaning, K = 50: each method, both VJP paths for the reverse-mode ones. */
export const hyperCleaningSuite = (options: Options) =>
  Effect.gen(function*() {
    const rows: Array<Row> = []
    for (const net of options.nets) {
      yield* Effect.gen(function*() {
        const { instance, settings } = yield* instanceOf(hyperCleaning, cleaningSettings(options, net))
        for (const name of options.methods ?? ["rhg", "iaptt-gm", "ls", "ns"]) {
          const method = methodByName(name)
          const solver = method.build(settings, methodSettings(method))
          // Reverse-mode steps and implicit products both take the hook where the problem has one.
          const paths = instance.problem.lowerHessianVectorProduct !== undefined
            ? [["closed-form", instance.problem], ["autodiff", withoutHvp(instance.problem)]] as const
            : [["autodiff", instance.problem]] as const
          const gradients: Array<ReadonlyArray<number>> = []
          for (const [vjp, problem] of paths) {
            const m = yield* measurePair(solver, problem, instance.x0, instance.y0, options.repetitions)
            gradients.push(m.gradX)
            rows.push(measuredRow({
              suite: "hyper-cleaning",
              backend: options.backend,
              task: "hyper-cleaning",
              method: name,
              variant: { net, vjp, K: settings.innerSteps },
              ...(gradients.length === 2 ? { extra: { relativeDifferenceToClosedForm: relativeError(gradients[1]!, gradients[0]!) } } : {})
            }, m))
          }
        }
      }).pipe(Effect.scoped, tensorScope)
    }
    return rows
  })

/** RHG on hyper-cleaning: plain reverse against checkpointing every c steps. */
export const checkpointingSuite = (options: Options) =>
  Effect.gen(function*() {
    const rows: Array<Row> = []
    for (const net of options.nets) {
      yield* Effect.gen(function*() {
        const { instance, settings } = yield* instanceOf(hyperCleaning, cleaningSettings(options, net))
        const rhg = methodByName("rhg").build(settings, {})
        for (const checkpointEvery of [undefined, 5, 10]) {
          const solver = checkpointEvery === undefined ? rhg : rhg.pipe(Solver.hypergradient(reverse({ checkpointEvery })))
          const m = yield* measurePair(solver, instance.problem, instance.x0, instance.y0, options.repetitions)
          rows.push(measuredRow({
            suite: "checkpointing",
            backend: options.backend,
            task: "hyper-cleaning",
            method: "rhg",
            variant: { net, checkpointEvery: checkpointEvery ?? "none", K: settings.innerSteps }
          }, m))
        }
      }).pipe(Effect.scoped, tensorScope)
    }
    return rows
  })

/** Selects y_k̄ at a given index: the truncation IAPTT-GM's PTT would pick, forced. */
export const forcedIndex = (kbar: number): Selection => ({
  name: `forced k̄ = ${kbar}`,
  select: (iterates, retainPrefix) =>
    Effect.map(Stream.runCollect(iterates), (all) => {
      const selected = all[kbar]!
      const prefix = retainPrefix === false ? [selected] : all.slice(0, kbar + 1)
      for (const iterate of all) if (iterate.k > 0 && !prefix.includes(iterate)) iterateTensors(iterate).forEach((t) => t.dispose())
      return { prefix, selected, stepsTaken: all.length - 1 }
    })
})

/** The reverse pass alone (hypergradient strategy on a finished trajectory), timed. */
const reversePass = (solver: Solver.Bounded, problem: BilevelProblem, x: Vector, y0: Vector) =>
  tensorScope(Effect.gen(function*() {
    const trajectory = yield* solver.selection.select(solver.inner(unroll(solver.dynamics, y0)), solver.hypergradient.needsPrefix)
    return yield* timed(solver.hypergradient.compute(solver.dynamics, trajectory, { outerStep: 0 }))
  })).pipe(Effect.provideService(LowerLevel, { at: () => problem, x, meter: { sample: () => {}, peakBytes: () => 0 } }))

/** IAPTT-GM's reverse pass at forced k̄ = K/4, K/2, K: its cost follows k̄, not K. */
export const truncationSuite = (options: Options) =>
  Effect.gen(function*() {
    const rows: Array<Row> = []
    for (const net of options.nets) {
      yield* Effect.gen(function*() {
        const { instance, settings } = yield* instanceOf(hyperCleaning, cleaningSettings(options, net))
        const K = settings.innerSteps
        for (const kbar of [Math.round(K / 4), Math.round(K / 2), K]) {
          const solver = methodByName("iaptt-gm").build(settings, {}).pipe(Solver.select(forcedIndex(kbar)))
          for (let i = 0; i < options.repetitions.warmup; i++) {
            const warm = yield* reversePass(solver, instance.problem, instance.x0, instance.y0)
            tf.dispose([warm.value.x, warm.value.y0])
          }
          const samples = []
          for (let i = 0; i < options.repetitions.reps; i++) {
            const sample = yield* reversePass(solver, instance.problem, instance.x0, instance.y0)
            tf.dispose([sample.value.x, sample.value.y0])
            samples.push(sample)
          }
          const m = yield* measurePair(solver, instance.problem, instance.x0, instance.y0, options.repetitions)
          rows.push(measuredRow({
            suite: "truncation",
            backend: options.backend,
            task: "hyper-cleaning",
            method: "iaptt-gm",
            variant: { net, kbar, K },
            extra: { reversePass: timing(samples) }
          }, m))
        }
      }).pipe(Effect.scoped, tensorScope)
    }
    return rows
  })

const toyCases: ReadonlyArray<{ readonly task: Task; readonly methods: ReadonlyArray<string> }> = [
  { task: toyNonconvex, methods: ["rhg", "iaptt-gm", "ls", "ns"] },
  { task: quadratic, methods: ["rhg", "ls", "ns"] },
  { task: toyLlc, methods: ["ia-gm", "ia-gm-a"] }
]

/** The toy problems at their default settings. */
export const toysSuite = (options: Options) =>
  Effect.gen(function*() {
    const rows: Array<Row> = []
    for (const { methods, task } of toyCases) {
      yield* Effect.gen(function*() {
        const { instance, settings } = yield* instanceOf(task, {})
        for (const name of options.methods?.filter((m) => methods.includes(m)) ?? methods) {
          const method = methodByName(name)
          const solver = method.build(settings, methodSettings(method))
          const m = yield* measurePair(solver, instance.problem, instance.x0, instance.y0, {
            warmup: options.repetitions.warmup + 2,
            reps: options.repetitions.reps * 4
          })
          rows.push(measuredRow({
            suite: "toys",
            backend: options.backend,
            task: task.name,
            method: name,
            variant: { K: settings.innerSteps }
          }, m))
        }
      }).pipe(Effect.scoped, tensorScope)
    }
    return rows
  })

/** RHG (K = 100) on the quadratic task as dimY = dimX grows: where each backend wins. */
export const crossoverSuite = (options: Options) =>
  Effect.gen(function*() {
    const rows: Array<Row> = []
    for (const dim of [2, 20, 100, 300]) {
      yield* Effect.gen(function*() {
        const { instance, settings } = yield* instanceOf(quadratic, { dimX: dim, dimY: dim })
        const m = yield* measurePair(methodByName("rhg").build(settings, {}), instance.problem, instance.x0, instance.y0, options.repetitions)
        rows.push(measuredRow({
          suite: "crossover",
          backend: options.backend,
          task: "quadratic",
          method: "rhg",
          variant: { dimY: dim, K: settings.innerSteps }
        }, m))
      }).pipe(Effect.scoped, tensorScope)
    }
    return rows
  })

/**
 * Where one hyper-cleaning RHG hypergradient spends its time: the sum of kernel times tf.profile
 * reports, the number of kernels, host reads (each a device sync), and the rest (dispatch: the
 * engine's bookkeeping, tapes, Effect streams), per VJP path.
 */
export const profileSuite = (options: Options) =>
  Effect.gen(function*() {
    const rows: Array<Row> = []
    for (const net of options.nets) {
      yield* Effect.gen(function*() {
        const { instance, settings } = yield* instanceOf(hyperCleaning, cleaningSettings(options, net))
        const solver = methodByName("rhg").build(settings, {})
        for (const [vjp, problem] of [["closed-form", instance.problem], ["autodiff", withoutHvp(instance.problem)]] as const) {
          release(yield* Solver.solve(solver, problem, instance.x0, instance.y0))
          // Host reads by the framework (Tensor.data/dataSync/array/arraySync: on a GPU, each one waits for the
          // device; kernels' own reads of the wasm heap are not counted) and wall time of a plain run…
          const prototype = tf.Tensor.prototype as unknown as Record<string, (...args: Array<unknown>) => unknown>
          const reads = { count: 0, ms: 0 }
          const readers = ["data", "dataSync", "array", "arraySync"] as const
          const original = Object.fromEntries(readers.map((key) => [key, prototype[key]!]))
          for (const key of readers) {
            prototype[key] = function(this: unknown, ...args: Array<unknown>) {
              reads.count++
              const started = performance.now()
              const result = original[key]!.apply(this, args)
              reads.ms += performance.now() - started
              return result
            }
          }
          const plain = yield* timed(Solver.solve(solver, problem, instance.x0, instance.y0)).pipe(
            Effect.ensuring(Effect.sync(() => Object.assign(prototype, original)))
          )
          release(plain.value)
          // …and kernel times of a profiled one (tf.profile reads every output, so reads are counted above).
          const info = yield* Effect.promise(() =>
            tf.profile(() => Effect.runPromise(Solver.solve(solver, problem, instance.x0, instance.y0)).then((s) => [s.gradX, s.gradZ, s.y]))
          )
          tf.dispose(info.result as Array<tf.Tensor>)
          // Registered kernels only: customGrad scopes wrap kernels that are listed as well.
          const kernels = info.kernels.filter((k) => tf.getKernel(k.name, tf.getBackend()) !== undefined)
          const byKernel = new Map<string, { count: number; ms: number }>()
          for (const kernel of kernels) {
            const entry = byKernel.get(kernel.name) ?? { count: 0, ms: 0 }
            entry.count++
            entry.ms += typeof kernel.kernelTimeMs === "number" ? kernel.kernelTimeMs : 0
            byKernel.set(kernel.name, entry)
          }
          const kernelMs = [...byKernel.values()].reduce((sum, k) => sum + k.ms, 0)
          const top = [...byKernel.entries()].sort((a, b) => b[1].ms - a[1].ms).slice(0, 6)
            .map(([name, k]) => ({ name, count: k.count, ms: Math.round(k.ms) }))
          const wallMs = plain.wallMs
          rows.push(log(row({
            suite: "profile",
            backend: options.backend,
            task: "hyper-cleaning",
            method: "rhg",
            variant: { net, vjp, K: settings.innerSteps },
            extra: {
              wallMs: Math.round(wallMs),
              cpuMs: Math.round(plain.cpuMs),
              kernelMs: Math.round(kernelMs),
              kernels: kernels.length,
              hostReads: reads.count,
              hostReadMs: Math.round(reads.ms),
              otherMs: Math.round(wallMs - kernelMs - reads.ms),
              top
            }
          })))
        }
      }).pipe(Effect.scoped, tensorScope)
    }
    return rows
  })

/** Images of random uniform pixels, `perClass` in each of `classes` classes (timing only: content does not matter). */
const noiseSource = (shape: readonly [number, number, number], classes: number, perClass: number): ClassImages => {
  const random = makeRandom(0)
  const size = shape[0] * shape[1] * shape[2]
  const pixels = random.array(classes * perClass * size, random.uniform)
  return {
    name: "synthetic noise",
    shape,
    classNames: Array.from({ length: classes }, (_, c) => String(c)),
    byClass: Array.from({ length: classes }, (_, c) => Int32Array.from({ length: perClass }, (__, i) => c * perClass + i)),
    write: (index, out, offset) => out.set(pixels.subarray(index * size, (index + 1) * size), offset)
  }
}

/** The outer step: RHG (or --method rhg, iaptt-gm, first-order, bda, ia-gm), ConvNet-4 with 32 channels, 5-way 1-shot, 15 queries, meta-batch 4, K = 10. */
export const fewShotSuite = (options: Options) =>
  Effect.gen(function*() {
    const rows: Array<Row> = []
    const sources: ReadonlyArray<readonly [string, Effect.Effect<ClassImages, DatasetError, FileSystem.FileSystem>]> = [
      ["28×28×1", idxSource(options.dataDir, "fashion-mnist")],
      ["84×84×3", Effect.sync(() => noiseSource([84, 84, 3], 10, 20))]
    ]
    for (const [input, load] of sources) {
      yield* Effect.gen(function*() {
        const settings = Schema.decodeUnknownSync(fewShotSettings)({ trainClasses: 5, testClasses: 5, evalEvery: 0 })
        const instance = yield* fewShotInstance(yield* load, settings)
        for (const name of options.methods?.filter((m) => ["rhg", "iaptt-gm", "first-order", "bda", "ia-gm"].includes(m)) ?? ["rhg"]) {
          const method = methodByName(name)
          const solver = method.build(settings, methodSettings(method))
          const step = (t: number) => hypergradientAt(solver, instance.problem, instance.x0, instance.y0, stepKey(Random.key(0), t))
          for (let i = 0; i < options.repetitions.warmup; i++) release(yield* step(i))
          const baseline = tf.memory().numTensors
          const samples = []
          const tensorsAfter: Array<number> = []
          let last: Solver.Solution | undefined
          for (let i = 0; i < options.repetitions.reps; i++) {
            const sample = yield* timed(step(options.repetitions.warmup + i))
            yield* readVector(sample.value.gradX)
            samples.push(sample)
            last = sample.value
            release(sample.value)
            tensorsAfter.push(tf.memory().numTensors - baseline)
          }
          const evaluation = input === "28×28×1" && name === "rhg"
            ? yield* timed(instance.evaluate!(instance.x0, instance.y0))
            : undefined
          rows.push(log(row({
            suite: "fewshot",
            backend: options.backend,
            task: "fewshot",
            method: name,
            variant: { input, backbone: "convnet4-32", episode: "5-way 1-shot 15q", metaBatch: 4, K: 10 },
            hypergradient: timing(samples),
            kbar: last!.kbar,
            cost: last!.cost,
            tensorsAfter,
            ...(evaluation === undefined
              ? {}
              : { extra: { testEpisodes: 600, evaluationS: Math.round(evaluation.wallMs / 100) / 10, testAccuracyRandomBackbone: evaluation.value["testAccuracy"] } })
          })))
        }
      }).pipe(Effect.scoped, tensorScope)
    }
    return rows
  })

export type Suite = (options: Options) => Effect.Effect<Array<Row>, DatasetError | InvalidSolver | HypergradientFailed, Needs>

export const suites: Record<string, Suite> = {
  "hyper-cleaning": hyperCleaningSuite,
  checkpointing: checkpointingSuite,
  truncation: truncationSuite,
  toys: toysSuite,
  crossover: crossoverSuite,
  profile: profileSuite,
  fewshot: fewShotSuite
}

export { stats }
