/**
 * Data hyper-cleaning: the metrics on hand-made cases, the split and corruption, the closed-form
 * ∇_y f against autodiff, hypergradients against finite differences, and short runs of every method.
 *
 * Nothing here needs the real dataset: `syntheticDataDir` (test/support/syntheticIdx.ts) writes a tiny MNIST-format training file
 * (6×6 images of 10 noisy class prototypes) to a temp dir, and the task reads it through its ordinary
 * `dataDir` setting. The one test on FashionMNIST itself skips when Debian's copy is not installed.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it as vitestIt, layer } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Exit, Fiber, Layer, Schema } from "effect"
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import type { BilevelProblem } from "../src/domain/Problem.ts"
import * as Random from "../src/domain/Random.ts"
import { make as makeRng, Rng } from "../src/domain/Rng.ts"
import * as Backend from "../src/runtime/Backend.ts"
import * as Checkpoint from "../src/runtime/checkpoint.ts"
import { evaluate } from "../src/runtime/evaluate.ts"
import type { ExperimentOptions } from "../src/runtime/reproduce/Experiment.ts"
import { table3, table3Report, type Table3Settings } from "../src/runtime/reproduce/table3.ts"
import { gradcheck } from "../src/runtime/gradcheck.ts"
import { replay, timingFields } from "../src/runtime/replay.ts"
import { resume, run } from "../src/runtime/run.ts"
import * as RunRecord from "../src/runtime/RunRecord.ts"
import { solve, upperAt } from "../src/solvers/Solver.ts"
import { iapttGm, ls, ns, rhg } from "../src/solvers/methods.ts"
import { hyperCleaning } from "../src/tasks/hyperCleaning.ts"
import { drawCleaningData } from "../src/tasks/hyperCleaning/split.ts"
import { accuracy, cleaningScores } from "../src/tasks/metrics.ts"
import { fashionMnistDir } from "../src/tasks/mnistLike.ts"
import { syntheticDataDir } from "./support/syntheticIdx.ts"
import { relativeError, vectorValue } from "./support/tf.ts"
import { scratchDir } from "./support/scratch.ts"

const dataDir = syntheticDataDir()
const scratch = scratchDir("hc-run")
let runs = 0

/** Small splits of the synthetic file; a larger LL step so that K = 5 steps move the net. */
const small = { dataDir, trainSize: 60, valSize: 60, testSize: 60, innerSteps: 5, innerLr: 0.5, hidden: 8 }

/** A task instance (under the caller's scope) on the small synthetic splits, seed 0. */
const instance = (settings: Record<string, unknown>) =>
  Schema.decodeUnknownEffect(hyperCleaning.settings)({ ...small, ...settings }).pipe(
    Effect.orDie,
    Effect.flatMap(hyperCleaning.make),
    Effect.provide(Rng.layer(0))
  )

describe("cleaning metrics (hand-made case)", () => {
  vitestIt("accuracy counts matching predictions", () => {
    assert.strictEqual(accuracy([1, 2, 3, 4], [1, 0, 3, 0]), 0.5)
    assert.strictEqual(accuracy([], []), 0)
  })

  vitestIt("precision, recall and F1 of kept (σ(x) ≥ threshold) against clean labels", () => {
    // σ(x) ≥ 0.5 ⇔ x ≥ 0: kept = examples 0, 1, 2, 5; clean = 0, 1, 3, 4.
    const x = [2, 0, 0.1, -1, -3, 5]
    const clean = [true, true, false, true, true, false]
    const s = cleaningScores(x, clean)
    assert.closeTo(s.precision, 2 / 4, 1e-12) // kept ∩ clean = {0, 1}
    assert.closeTo(s.recall, 2 / 4, 1e-12) // 2 of 4 clean kept
    assert.closeTo(s.f1, 0.5, 1e-12)
    assert.closeTo(s.keptFraction, 4 / 6, 1e-12)
    // A higher threshold, σ(x) ≥ 0.8 ⇔ x ≥ 1.386: kept = {0, 5}: P = 1/2, R = 1/4, F1 = 2·(1/8)/(3/4) = 1/3.
    const strict = cleaningScores(x, clean, 0.8)
    assert.closeTo(strict.precision, 0.5, 1e-12)
    assert.closeTo(strict.recall, 0.25, 1e-12)
    assert.closeTo(strict.f1, 1 / 3, 1e-12)
  })

  vitestIt("keeping nothing scores 0, not NaN", () => {
    const s = cleaningScores([-1, -2], [true, false])
    assert.deepStrictEqual(s, { precision: 0, recall: 0, f1: 0, keptFraction: 0 })
  })
})

describe("splits and corruption", () => {
  const source = {
    images: Float32Array.from({ length: 100 * 4 }, (_, i) => i),
    labels: Int32Array.from({ length: 100 }, (_, i) => i % 10),
    n: 100,
    rows: 2,
    cols: 2
  }
  const draw = (corruption: "different" | "any", seed = 5) =>
    drawCleaningData(source, makeRng(seed), {
      trainSize: 40,
      valSize: 30,
      testSize: 20,
      corruptionRate: 0.5,
      corruption,
      classes: 10
    })

  vitestIt("draws disjoint splits, keeps rows with their labels, and is a function of the seed", () => {
    const data = draw("different")
    const firstPixel = (e: { features: Float32Array; n: number }) => Array.from({ length: e.n }, (_, i) => e.features[i * 4]! / 4)
    const ids = [...firstPixel(data.train), ...firstPixel(data.validation), ...firstPixel(data.test)]
    assert.strictEqual(new Set(ids).size, 90)
    firstPixel(data.train).forEach((id, i) => assert.strictEqual(data.trueTrainLabels[i], id % 10))
    firstPixel(data.test).forEach((id, i) => assert.strictEqual(data.test.labels[i], id % 10))
    assert.deepStrictEqual(draw("different").train.labels, data.train.labels)
  })

  vitestIt("`different` changes exactly ⌊rate·n⌋ labels, `any` at most that many", () => {
    const different = draw("different")
    assert.strictEqual(different.corrupted, 20)
    assert.strictEqual(different.clean.filter((c) => !c).length, 20)
    different.clean.forEach((c, i) => assert.strictEqual(c, different.train.labels[i] === different.trueTrainLabels[i]))
    const any = draw("any")
    assert.isAtMost(any.clean.filter((c) => !c).length, 20)
  })
})

layer(Layer.merge(Backend.layer("cpu"), NodeServices.layer), { timeout: 120_000 })("hyper-cleaning task", (it) => {
  it.effect("the closed-form ∇_y f equals autodiff of f (linear and mlp), to 1e-5 relative", () =>
    Effect.gen(function*() {
      for (const net of ["linear", "mlp"]) {
        const { problem, y0 } = yield* instance({ net })
        const x = tf.randomNormal([small.trainSize], 0, 1, "float32", 7)
        const closed = vectorValue(problem.lowerGradient!(x, y0))
        const auto = vectorValue(tf.grad((y: tf.Tensor) => problem.lower(x, y))(y0))
        assert.isBelow(relativeError(closed, auto), 1e-5, net)
        // …and so do its derivatives, which hypergradients take: ∂⟨∇_y f, v⟩/∂x and ∂⟨∇_y f, v⟩/∂y.
        const v = tf.randomNormal(y0.shape, 0, 1, "float32", 8)
        const mixed = (gradient: (x: tf.Tensor, y: tf.Tensor) => tf.Tensor) =>
          tf.grads((xx: tf.Tensor, yy: tf.Tensor) => tf.sum(tf.mul(gradient(xx, yy), v)))([x, y0]).map(vectorValue)
        const [closedX, closedY] = mixed(problem.lowerGradient!)
        const [autoX, autoY] = mixed((xx, yy) => tf.grad((w: tf.Tensor) => problem.lower(xx, w))(yy))
        assert.isBelow(relativeError(closedX!, autoX!), 1e-5, `${net} ∂x`)
        assert.isBelow(relativeError(closedY!, autoY!), 1e-5, `${net} ∂y`)
      }
    }).pipe(Effect.scoped))

  it.effect("RHG's hypergradient with the closed-form ∇_y f equals the one by autodiff", () =>
    Effect.gen(function*() {
      for (const net of ["linear", "mlp"]) {
        const { problem, x0, y0 } = yield* instance({ net })
        const { lowerGradient: _, ...autodiff } = problem
        const solver = rhg.build({ innerSteps: 5, innerLr: 0.5 }, {})
        const x = tf.randomNormal(x0.shape, 0, 1, "float32", 9)
        const a = yield* solve(solver, problem, x, y0)
        const b = yield* solve(solver, autodiff satisfies BilevelProblem, x, y0)
        assert.isBelow(relativeError(vectorValue(a.gradX), vectorValue(b.gradX)), 1e-4, net)
      }
    }).pipe(Effect.scoped))

  it.effect("LS and NS take their Hessian-vector products from the task's closed form at one linearization: the same hypergradient as by autodiff", () =>
    Effect.gen(function*() {
      for (const net of ["linear", "mlp"]) {
        const { problem, x0, y0 } = yield* instance({ net })
        const { lowerHessianVectorProduct: _h, lowerLinearization: _l, ...autodiff } = problem
        const x = tf.randomNormal(x0.shape, 0, 1, "float32", 9)
        // Few CG iterations: CG amplifies the two paths' float32 rounding as it goes on an ill-conditioned Hessian.
        for (const solver of [ls.build({ innerSteps: 20, innerLr: 0.5 }, { cgIters: 3, cgIndefinite: "fail" }), ns.build({ innerSteps: 20, innerLr: 0.5 }, { neumannTerms: 10 })]) {
          let [calls, recomputed] = [0, 0]
          const counted: BilevelProblem = {
            ...problem,
            lowerHessianVectorProduct: (x, y, v, residuals) => (
              calls++, residuals === undefined && recomputed++, problem.lowerHessianVectorProduct!(x, y, v, residuals)
            )
          }
          const closed = yield* solve(solver, counted, x, y0)
          const taped = yield* solve(solver, autodiff satisfies BilevelProblem, x, y0)
          assert.strictEqual(closed.cost.hvps, taped.cost.hvps)
          assert.strictEqual(calls, closed.cost.hvps, "every product (A^T v and then B^T v) from the closed form")
          assert.strictEqual(recomputed, 0, "every product reuses the one linearization at (x, y_K)")
          assert.isBelow(relativeError(vectorValue(closed.gradX), vectorValue(taped.gradX)), 1e-4, `${net} ${solver.hypergradient.name}`)
        }
      }
    }).pipe(Effect.scoped))

  it.effect("a minibatch draw's closed-form ∇_y f and its products equal autodiff of its f; its x-gradient lives on its rows", () =>
    Effect.gen(function*() {
      for (const net of ["linear", "mlp"]) {
        const { problem, y0 } = yield* instance({ net, lowerBatch: 12, upperBatch: 9 })
        const drawn = problem.sample!(makeRng(3))
        const x = tf.randomNormal([small.trainSize], 0, 1, "float32", 7)
        const v = tf.randomNormal(y0.shape, 0, 1, "float32", 8)
        const auto = (xx: tf.Tensor, yy: tf.Tensor) => tf.grad((w: tf.Tensor) => drawn.lower(xx, w))(yy)
        assert.isBelow(relativeError(vectorValue(drawn.lowerGradient!(x, y0)), vectorValue(auto(x, y0))), 1e-5, net)
        const [autoX, autoY] = tf.grads((xx: tf.Tensor, yy: tf.Tensor) => tf.sum(tf.mul(auto(xx, yy), v)))([x, y0]).map(vectorValue)
        const closed = drawn.lowerHessianVectorProduct!(x, y0, v)
        assert.isBelow(relativeError(vectorValue(closed.x), autoX!), 1e-5, `${net} ∂x`)
        assert.isBelow(relativeError(vectorValue(closed.y), autoY!), 1e-5, `${net} ∂y`)
        assert.strictEqual(autoX!.filter((g) => g !== 0).length, 12, "only the 12 drawn examples' weights move f")
        // F on 9 validation rows is not F on all of them.
        assert.notStrictEqual(vectorValue(drawn.upper(x, y0))[0], vectorValue(problem.upper(x, y0))[0])
      }
    }).pipe(Effect.scoped))

  it.effect("minibatch RHG: the closed-form path equals autodiff, and finite differences with the samples held", () =>
    Effect.gen(function*() {
      const settings = { ...small, lowerBatch: 15, upperBatch: 20 }
      const { problem, x0, y0 } = yield* instance(settings)
      const { lowerGradient: _g, lowerHessianVectorProduct: _h, lowerLinearization: _l, ...autodiff } = problem
      const solver = rhg.build({ innerSteps: 5, innerLr: 0.5 }, {})
      const x = tf.randomNormal(x0.shape, 0, 1, "float32", 9)
      const a = yield* solve(solver, problem, x, y0, Random.key(4))
      const b = yield* solve(solver, autodiff satisfies BilevelProblem, x, y0, Random.key(4))
      assert.isBelow(relativeError(vectorValue(a.gradX), vectorValue(b.gradX)), 1e-4)
      const r = yield* gradcheck({ task: "hyper-cleaning", method: "rhg", seed: 0, settings, step: 0.1 })
      assert.isBelow(r.relError, 1e-2, `${r.relError}`)
    }).pipe(Effect.scoped))

  it.effect("a minibatch run is a function of its seed: replayed and resumed bit for bit, and not the full-batch run", () =>
    Effect.gen(function*() {
      const request = { task: "hyper-cleaning", method: "iaptt-gm", seed: 2, settings: { ...small, outerSteps: 6, lowerBatch: 10, upperBatch: 15 } }
      const first = yield* run({ ...request, out: path.join(scratch, `run-${runs++}`) })
      const replayed = yield* replay({ dir: first.runDir, ignore: [...timingFields, "meanMsPerStep"] })
      assert.strictEqual(replayed.replayedSteps, 6)
      assert.isTrue(replayed.identical, JSON.stringify(replayed.firstDifference))
      const dir = path.join(scratch, `run-${runs++}`)
      yield* Effect.exit(run({ ...request, out: dir, checkpointEvery: 2, onStep: (s) => (s.t === 3 ? Effect.die("crash") : Effect.void) }))
      yield* resume({ dir })
      const [a, b] = [yield* RunRecord.read(first.runDir), yield* RunRecord.read(dir)]
      assert.deepStrictEqual(b.steps.map((s) => s.F), a.steps.map((s) => s.F))
      const fullBatch = yield* run({ ...request, settings: { ...request.settings, lowerBatch: 0, upperBatch: 0 }, out: path.join(scratch, `run-${runs++}`) })
      assert.notDeepEqual((yield* RunRecord.read(fullBatch.runDir)).steps.map((s) => s.F), a.steps.map((s) => s.F))
      const tooLarge = yield* Effect.flip(run({ ...request, settings: { ...request.settings, lowerBatch: 61 }, out: path.join(scratch, `run-${runs++}`) }))
      assert.include(tooLarge.message, "lowerBatch 61 exceeds trainSize 60")
    }))

  it.effect("RHG and IAPTT-GM hypergradients match finite differences (linear and mlp)", () =>
    Effect.gen(function*() {
      // float32 central differences: F ≈ 2.3 while the derivatives along x are ≈ 1e-3, so the CLI's
      // default step 1e-2 drowns in rounding (≈ 1e-7 / h); at 0.1 the errors measured 1.7e-3 (rhg linear),
      // 1.2e-4 (iaptt-gm linear), 1.9e-3 (rhg mlp), 6.9e-4 (iaptt-gm mlp); at 0.3 truncation takes over.
      for (const net of ["linear", "mlp"]) {
        for (const method of ["rhg", "iaptt-gm"]) {
          const r = yield* gradcheck({ task: "hyper-cleaning", method, seed: 0, settings: { ...small, net }, step: 0.1 })
          assert.strictEqual(r.reference, "finite-difference")
          assert.isBelow(r.relError, 1e-2, `${method} ${net}: ${r.relError}`)
        }
      }
    }))

  it.effect("IAPTT-GM's dF/dx alone matches finite differences along x (the joint check is dominated by z)", () =>
    Effect.gen(function*() {
      const { problem, x0, y0 } = yield* instance({})
      const solver = iapttGm.build({ innerSteps: 5, innerLr: 0.5 }, {})
      const solution = yield* solve(solver, problem, x0, y0)
      const gradX = vectorValue(solution.gradX)
      const rng = makeRng(3)
      const h = 0.3
      const projected: Array<number> = []
      const expected: Array<number> = []
      for (let i = 0; i < 6; i++) {
        const d = Array.from({ length: small.trainSize }, () => rng.normal())
        const n = Math.hypot(...d)
        const at = (sign: number) => upperAt(solver, problem, tf.tensor1d(d.map((di) => (sign * h * di) / n)), y0)
        expected.push(((yield* at(1)) - (yield* at(-1))) / (2 * h))
        projected.push(d.reduce((s, di, j) => s + (di / n) * gradX[j]!, 0))
      }
      assert.isBelow(relativeError(projected, expected), 1e-2, `${projected} vs ${expected}`)
    }).pipe(Effect.scoped))

  it.effect("every Table 3 method runs a few outer steps, records metrics every metricsEvery steps, frees its tensors", () =>
    Effect.gen(function*() {
      for (const method of ["ls", "ns", "rhg", "t-rhg", "bda", "ia-gm", "iaptt-gm"]) {
        const before = tf.memory().numTensors
        const result = yield* run({
          task: "hyper-cleaning",
          method,
          seed: 0,
          settings: { ...small, outerSteps: 4, metricsEvery: 2, ...(method === "t-rhg" ? { lastM: 2 } : {}) },
          out: path.join(scratch, `run-${runs++}`)
        })
        assert.strictEqual(tf.memory().numTensors, before, method)
        const record = yield* RunRecord.read(result.runDir)
        const recorded = record.steps.filter((s) => typeof s["testAccuracy"] === "number").map((s) => s.t)
        assert.deepStrictEqual(recorded, [0, 2, 3], method) // every 2 steps, and the last
        const final = result.final
        for (const key of ["testAccuracy", "f1", "precision", "recall", "valLoss", "bestTestAccuracy", "bestF1"]) {
          const value = final[key] as number
          assert.isTrue(Number.isFinite(value), `${method} ${key}`)
        }
        assert.strictEqual("testAccuracyZ" in final, method.startsWith("ia"), method)
      }
    }))

  it.effect("metrics evaluate the net the method trains: FISTA's for IA-GM(A), not plain GD's", () =>
    Effect.gen(function*() {
      const settings = { ...small, outerSteps: 1, metricsEvery: 1, acceleration: "fista" }
      const result = yield* run({ task: "hyper-cleaning", method: "ia-gm-a", seed: 0, settings, out: path.join(scratch, `run-${runs++}`), checkpointEvery: 1 })
      const recorded = (yield* RunRecord.read(result.runDir)).steps[0]!["valLoss"] as number
      const checkpoint = (yield* Checkpoint.read(result.runDir))!
      const decode = (t: typeof checkpoint.x) => {
        const bytes = Buffer.from(t.data, "base64")
        return tf.tensor1d(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4).slice())
      }
      const { problem } = yield* instance(settings)
      const [x, z]: ReadonlyArray<tf.Tensor> = [decode(checkpoint.x), decode(checkpoint.z)]
      // K steps of FISTA (paper Eq. 9) and of plain GD from z at x, written out here.
      const lr = small.innerLr
      let [y, u, t]: [tf.Tensor, tf.Tensor, number] = [z!, z!, 1]
      let descended = z!
      for (let k = 0; k < small.innerSteps; k++) {
        const next = tf.sub(u, tf.mul(lr, problem.lowerGradient!(x!, u)))
        const tNext = (1 + Math.sqrt(1 + 4 * t * t)) / 2
        u = tf.add(next, tf.mul((t - 1) / tNext, tf.sub(next, y)))
        ;[y, t] = [next, tNext]
        descended = tf.sub(descended, tf.mul(lr, problem.lowerGradient!(x!, descended)))
      }
      const fista = vectorValue(problem.upper(x!, y))[0]!
      const plain = vectorValue(problem.upper(x!, descended))[0]!
      assert.approximately(recorded, fista, 1e-5 * Math.abs(fista))
      assert.isAbove(Math.abs(plain - fista), 1e-3 * Math.abs(fista), "FISTA and GD nets differ here, so the check can fail")
    }).pipe(Effect.scoped))

  it.effect("the converged-training metric is GD from the method's y_0 stopped at ‖∇_y f‖ ≤ tolerance, done here by hand", () =>
    Effect.gen(function*() {
      const settings = { ...small, outerSteps: 2, metricsEvery: 5, convergedEvery: 1, convergedTolerance: 0.05, convergedMaxSteps: 400 }
      const result = yield* run({ task: "hyper-cleaning", method: "rhg", seed: 0, settings, out: path.join(scratch, `run-${runs++}`), checkpointEvery: 1 })
      const steps = (yield* RunRecord.read(result.runDir)).steps
      assert.deepStrictEqual(steps.map((s) => typeof s["convergedTestAccuracy"]), ["number", "number"], "at every convergedEvery step")
      const last = steps[1]!
      const checkpoint = (yield* Checkpoint.read(result.runDir))!
      const bytes = Buffer.from(checkpoint.x.data, "base64")
      const x = tf.tensor1d(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4).slice())
      const { problem, y0 } = yield* instance(settings)
      let y = y0
      let k = 0
      const gradientNorm = () => Math.hypot(...vectorValue(problem.lowerGradient!(x, y)))
      while (k < settings.convergedMaxSteps && small.innerLr * gradientNorm() > small.innerLr * settings.convergedTolerance) {
        y = tf.sub(y, tf.mul(small.innerLr, problem.lowerGradient!(x, y)))
        k++
      }
      assert.isAbove(k, small.innerSteps, "it trains past the protocol's K")
      assert.isBelow(k, settings.convergedMaxSteps, "and stops at the tolerance")
      assert.strictEqual(last["convergedSteps"], k)
      assert.approximately(last["convergedValLoss"] as number, vectorValue(problem.upper(x, y))[0]!, 1e-5)
      // The same measure apart from training, at the checkpoint: for runs recorded without it.
      const evaluation = yield* evaluate(result.runDir, { baseline: false })
      assert.strictEqual(evaluation.step, 2)
      assert.strictEqual(evaluation.trained["convergedSteps"], k)
      assert.strictEqual(evaluation.trained["convergedTestAccuracy"], last["convergedTestAccuracy"])
      assert.strictEqual(evaluation.trained["convergedValLoss"], last["convergedValLoss"])
      assert.strictEqual(last["convergedFromY0Steps"], k, "y_0 never moved: the two measures are one")
      assert.strictEqual(last["convergedFromY0TestAccuracy"], last["convergedTestAccuracy"])
      // Warm-started, the method's y_0 is the carried iterate; the measure from the fixed y_0 is taken too.
      const warm = yield* run({
        task: "hyper-cleaning",
        method: "rhg",
        seed: 0,
        settings: { ...settings, warmStart: true },
        out: path.join(scratch, `run-${runs++}`),
        checkpointEvery: 1
      })
      const warmLast = (yield* RunRecord.read(warm.runDir)).steps[1]!
      const warmCheckpoint = (yield* Checkpoint.read(warm.runDir))!
      const [warmX, carried] = [warmCheckpoint.x, warmCheckpoint.z].map((t) => {
        const b = Buffer.from(t.data, "base64")
        return tf.tensor1d(new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4).slice())
      })
      const stepsFrom = (start: tf.Tensor) => {
        let [w, n] = [start, 0]
        const norm = () => Math.hypot(...vectorValue(problem.lowerGradient!(warmX!, w)))
        while (n < settings.convergedMaxSteps && small.innerLr * norm() > small.innerLr * settings.convergedTolerance) {
          w = tf.sub(w, tf.mul(small.innerLr, problem.lowerGradient!(warmX!, w)))
          n++
        }
        return n
      }
      const [fromCarried, fromY0] = [stepsFrom(carried!), stepsFrom(y0)]
      assert.notStrictEqual(fromCarried, fromY0, "the two starts differ here, so the check can fail")
      assert.strictEqual(warmLast["convergedSteps"], fromCarried)
      assert.strictEqual(warmLast["convergedFromY0Steps"], fromY0)
      const warmEvaluation = yield* evaluate(warm.runDir, { baseline: false })
      assert.strictEqual(warmEvaluation.trained["convergedFromY0Steps"], fromY0)
      assert.strictEqual(warmEvaluation.trained["convergedFromY0TestAccuracy"], warmLast["convergedFromY0TestAccuracy"])
    }).pipe(Effect.scoped))

  it.effect("a short IAPTT-GM run learns: validation loss falls and test accuracy beats chance", () =>
    Effect.gen(function*() {
      const result = yield* run({
        task: "hyper-cleaning",
        method: "iaptt-gm",
        seed: 0,
        settings: { ...small, trainSize: 120, outerSteps: 30, metricsEvery: 29, outerLr: 0.1, innerLr: 0.1 },
        out: path.join(scratch, `run-${runs++}`)
      })
      const record = yield* RunRecord.read(result.runDir)
      const [first, last] = record.steps.filter((s) => typeof s["valLoss"] === "number")
      assert.isBelow(last!["valLoss"] as number, first!["valLoss"] as number)
      assert.isAbove(result.final["testAccuracy"] as number, 0.3)
      assert.isAbove(result.final["f1"] as number, 0.6)
    }))

  /** Table 3 on small synthetic splits, K = 3. */
  const table3Settings = (settings: Record<string, unknown>) =>
    Schema.decodeUnknownEffect(table3.settings)({ dataDir, trainSize: 60, valSize: 60, testSize: 60, innerSteps: 3, ...settings })
  const table3Options = (settings: Table3Settings, options: Partial<ExperimentOptions<Table3Settings>>): ExperimentOptions<Table3Settings> => ({
    out: path.join(scratch, `table3-${runs++}`),
    seeds: [0],
    settings,
    command: "bilevel reproduce table3 (test)",
    overwrite: false,
    progress: () => Effect.void,
    ...options
  })

  it.effect("reproduce table3 writes a report beside the paper's numbers, a plot, and reuses complete records", () =>
    Effect.gen(function*() {
      const settings = yield* table3Settings({
        outerSteps: 3,
        methods: "rhg,iaptt-gm",
        warmStart: "also",
        convergedEvery: 2,
        convergedMaxSteps: 25
      })
      const lines: Array<string> = []
      const options = table3Options(settings, { progress: (line: string) => Effect.sync(() => void lines.push(line)) })
      const out = options.out
      const result = yield* table3.run(options)
      const report = readFileSync(result.report, "utf8")
      assert.include(report, "| RHG | 3 |")
      assert.include(report, "| RHG (warm start) | 3 |") // a fixed-init method's warm twin; IAPTT-GM learns z and has none
      assert.notInclude(report, "IAPTT-GM (warm start)")
      assert.include(report, "(25 steps)") // the converged-training column: tolerance not reached within 25 steps
      assert.match(report, /\| RHG \| 3 \|( [^|]* \|){2} (\d+\.\d\d \(25 steps\)) \| \2 \|/, "from y_0 and from the fixed y_0: one measure")
      assert.include(report, "81.91 / 87.12") // the paper's FashionMNIST RHG
      assert.include(report, "not available here")
      assert.isTrue(existsSync(path.join(out, "accuracy-f1.png")) && existsSync(path.join(out, "accuracy-f1.svg")))
      assert.strictEqual(result.report, path.join(out, "README.md"))
      assert.strictEqual(result.checks.length, 1)
      assert.isFalse(result.checks[0]!.passed) // 3 outer steps on 60 examples
      writeFileSync(path.join(out, "notes.md"), "## Why the rows differ\n\nThree outer steps.\n")
      yield* table3.run(options)
      assert.include(lines.at(-1)!, "not run again")
      assert.include(readFileSync(result.report, "utf8"), "(PNG: accuracy-f1.png)\n\n## Why the rows differ\n\nThree outer steps.\n\n## Settings")
      // A record without the converged measure takes it from its `bilevel evaluate` result, saying so.
      const records = yield* Effect.forEach(["rhg", "iaptt-gm"], (m) => RunRecord.read(path.join(out, "records", m)))
      const without = records.map((r) => ({
        ...r,
        steps: r.steps.map(({ convergedTestAccuracy: _a, convergedSteps: _s, convergedFromY0TestAccuracy: _b, convergedFromY0Steps: _t, ...step }) => step),
        summary: r.summary && {
          ...r.summary,
          final: { ...r.summary.final, convergedTestAccuracy: undefined, convergedSteps: undefined, convergedFromY0TestAccuracy: undefined, convergedFromY0Steps: undefined }
        }
      }))
      const evaluated = {
        ...without[1]!,
        evaluation: { step: 3, trained: { convergedTestAccuracy: 0.5, convergedSteps: 7, convergedFromY0TestAccuracy: 0.25, convergedFromY0Steps: 9 } }
      }
      const text = table3Report([without[0]!, evaluated], { dataset: "fashion-mnist", net: "linear", plot: "p.svg", commands: "" })
      assert.match(text, /\| RHG \| 3 \|( [^|]* \|){2} — \| — \|/)
      assert.include(text, "| 50.00 (7 steps, `bilevel evaluate` at step 3) | 25.00 (9 steps, `bilevel evaluate` at step 3) |")
      assert.include(text, "| -33.67 |") // the converged accuracy against the paper's IAPTT-GM (83.67)
      // Methods the paper's Table 3 lacks get their own names and no paper figures.
      const added = table3Report([{ ...without[0]!, info: { ...without[0]!.info, method: "ia-gm-a" } }], { dataset: "fashion-mnist", net: "linear", plot: "p.svg", commands: "" })
      assert.match(added, /\| IA-GM\(A\) \| 3 \|( [^|]* \|){6} — \|/)
      // A killed run's record is resumed by the next invocation, to the same steps; one with other settings is refused.
      const rhgDir = path.join(out, "records", "rhg")
      const before = (yield* RunRecord.read(rhgDir)).steps
      rmSync(path.join(rhgDir, "summary.json"))
      const changed = yield* Effect.flip(table3.run({ ...options, settings: { ...settings, innerSteps: 4 } }))
      assert.include(changed.message, "holds an unfinished run with other settings (innerSteps)")
      yield* table3.run(options)
      assert.isTrue(lines.some((l) => l.startsWith("rhg: unfinished record") && l.endsWith("resuming it")))
      assert.isTrue(lines.some((l) => /^rhg: 3 outer steps \(resumed from step 0\)/.test(l)))
      const after = (yield* RunRecord.read(rhgDir))
      assert.strictEqual(after.summary?.status, "completed")
      assert.deepStrictEqual(after.steps.map(({ ms: _, ...step }) => step), before.map(({ ms: _, ...step }) => step))
      const twoSeeds = yield* Effect.flip(table3.run({ ...options, seeds: [0, 1] }))
      assert.include(twoSeeds.message, "table3 runs one seed per method")
      const unknownMethod = yield* Effect.flip(table3.run({ ...options, settings: { ...settings, methods: "rhg,nope" } }))
      assert.include(unknownMethod.message, "Unknown method(s) nope")
      // LS with its negative curvature skipped is a record and row of its own; a failed run's error is printed under the table.
      yield* table3.run({ ...options, settings: { ...settings, methods: "ls", warmStart: "off", cgIndefinite: "skip" } })
      const skipped = yield* RunRecord.read(path.join(out, "records", "ls-skip"))
      assert.strictEqual(skipped.info.config["cgIndefinite"], "skip")
      const failed = { ...records[0]!, summary: { ...records[0]!.summary!, status: "failed" as const, error: "HypergradientFailed: indefinite" } }
      const withFailure = table3Report([failed, skipped], { dataset: "fashion-mnist", net: "linear", plot: "p.svg", commands: "" })
      assert.include(withFailure, "| LS (negative curvature skipped) | 3 |")
      assert.include(withFailure, "- rhg, after 3 outer steps: HypergradientFailed: indefinite")
      writeFileSync(path.join(out, "records", "rhg", "evaluation.json"), "{ not json")
      const corrupt = yield* Effect.flip(table3.run({ ...options, settings: { ...settings, reportOnly: true } }))
      assert.strictEqual(corrupt._tag, "RunRecordError")
      assert.include(corrupt.message, "evaluation.json")
    }))

  it.effect("table3 warmStart=only runs just the warm-started twins, and refuses a method that learns y_0", () =>
    Effect.gen(function*() {
      const options = table3Options(yield* table3Settings({ outerSteps: 2, methods: "rhg", warmStart: "only", convergedEvery: 0 }), {})
      yield* table3.run(options)
      assert.deepStrictEqual(readdirSync(path.join(options.out, "records")), ["rhg-warm"])
      const warm = yield* RunRecord.read(path.join(options.out, "records", "rhg-warm"))
      assert.strictEqual(warm.info.config["warmStart"], true)
      assert.strictEqual(warm.summary?.status, "completed")
      const refused = yield* Effect.flip(table3.run({ ...options, settings: { ...options.settings, methods: "rhg,iaptt-gm" } }))
      assert.strictEqual(refused._tag, "InvalidConfig")
      assert.include(refused.message, "iaptt-gm learn y_0 = z")
    }))

  it.effect("with handleSignals, a SIGINT during table3 ends the running record cleanly and starts no further run", () =>
    Effect.gen(function*() {
      const settings = yield* table3Settings({ outerSteps: 400, methods: "rhg,ns", convergedEvery: 0 })
      const options = table3Options(settings, { handleSignals: true })
      const out = options.out
      const rhgDir = path.join(out, "records", "rhg")
      const experiment = yield* Effect.forkChild(Effect.exit(table3.run(options)))
      const steps = path.join(rhgDir, "steps.ndjson")
      const recorded = () => existsSync(steps) ? readFileSync(steps, "utf8").split("\n").length - 1 : 0
      // Real time (this suite's clock is the test clock).
      while (recorded() < 3) yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 20)))
      // Only the session's own listener hears it: this worker process has none of its own.
      process.emit("SIGINT", "SIGINT")
      const exit = yield* Fiber.join(experiment)
      assert.isTrue(Exit.hasInterrupts(exit), "the experiment is interrupted")
      const summary = yield* RunRecord.readSummary(rhgDir)
      assert.strictEqual(summary?.status, "interrupted")
      assert.strictEqual(summary?.outerSteps, recorded())
      assert.strictEqual(process.listenerCount("SIGINT"), 0, "the listener is gone with the session")
      assert.isFalse(existsSync(path.join(out, "records", "ns")), "NS never started")
      assert.isFalse(existsSync(path.join(out, "README.md")), "no report from a partial record")
    }))

  it.effect("asking for more examples than the file holds is a DatasetError", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(instance({ trainSize: 300, valSize: 100, testSize: 100 }).pipe(Effect.scoped))
      assert.strictEqual(error._tag, "DatasetError")
      assert.include(error.message, "fewer than trainSize + valSize + testSize = 500")
    }))

  it.effect.skipIf(!existsSync(fashionMnistDir))(
    `on FashionMNIST (${fashionMnistDir}; skipped when absent): 5000/5000/10000 split, half the labels corrupted`,
    () =>
      Effect.gen(function*() {
        const { problem, x0, y0 } = yield* Effect.provide(
          Effect.flatMap(Schema.decodeUnknownEffect(hyperCleaning.settings)({}), hyperCleaning.make),
          Rng.layer(0)
        )
        assert.deepStrictEqual(x0.shape, [5000])
        assert.deepStrictEqual(y0.shape, [7850])
        const f = tf.tidy(() => problem.upper(x0, y0).dataSync()[0]!)
        assert.closeTo(f, Math.log(10), 0.3) // near-uniform predictions at the small init
      }).pipe(Effect.scoped)
  )
})
