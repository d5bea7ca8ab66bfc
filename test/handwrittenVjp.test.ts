/**
 * Hand-written VJPs of LL steps (Dynamics.vjp, from a problem's closed-form Hessian-vector product)
 * against autodiff of the same step, element by element and through whole hypergradients, with the
 * residuals the forward steps kept (Dynamics.linearizedStep) reaching the reverse steps; BDA's, from
 * the products of both objectives; and the hyper-cleaning task's closed-form Hessian-vector products
 * (linear and MLP nets) against autodiff of its closed-form ∇_y f and ∇_y F.
 */
import { NodeServices } from "@effect/platform-node"
import { afterAll, assert, layer } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Layer, Schema } from "effect"
import { rmSync } from "node:fs"
import { writeSyntheticTrainingFile } from "../bench/syntheticData.ts"
import type { BilevelProblem } from "../src/domain/Problem.ts"
import { make as makeRng, Rng } from "../src/domain/Rng.ts"
import { bda, fista, gradientDescent, nesterovMomentum } from "../src/dynamics/Dynamics.ts"
import * as Backend from "../src/runtime/Backend.ts"
import * as Solver from "../src/solvers/Solver.ts"
import { bdaMethod, iaGmA, iapttGm, rhg } from "../src/solvers/methods.ts"
import { stepVjp } from "../src/solvers/reverse.ts"
import { hyperCleaning } from "../src/tasks/hyperCleaning.ts"
import * as Classifier from "../src/tasks/hyperCleaning/classifier.ts"
import { vjp } from "../src/solvers/vjp.ts"
import { smoothProblem } from "./support/smoothProblem.ts"
import { vectorValue } from "./support/tf.ts"

const syntheticData = writeSyntheticTrainingFile(200, 6, { prefix: "bilevel-vjp-test-" })
afterAll(() => rmSync(syntheticData, { recursive: true, force: true }))

const relativeError = (a: ReadonlyArray<number>, b: ReadonlyArray<number>) =>
  Math.hypot(...a.map((ai, i) => ai - b[i]!)) / Math.max(Math.hypot(...b), 1e-12)

for (const backend of ["cpu", "wasm"] as const) {
  layer(Layer.merge(Backend.layer(backend), NodeServices.layer))(`hand-written VJPs (${backend})`, (it) => {
    const gd = gradientDescent({ lr: 0.3 })
    const momentum = nesterovMomentum({ lr: 0.2, momentum: 0.6 })
    const accelerated = fista({ lr: 0.2 })

    it.effect("one step: the closed form equals autodiff of the step, for x and every state entry", () =>
      Effect.sync(() => {
        const { autodiff, problem, x0 } = smoothProblem({ dimX: 3, dimY: 8 })
        const rng = makeRng(3)
        const random = () => tf.tensor1d(rng.array(8, rng.normal))
        for (const dynamics of [gd, momentum, accelerated]) {
          const state = dynamics.init(random()).map(() => random())
          const cotangent = state.map(() => random())
          // Step 4: FISTA's momentum (t_4 − 1)/t_5 is far from 0 and 1.
          const fast = dynamics.vjp!(problem)!(x0, state, 4, cotangent)
          const slow = stepVjp(dynamics, autodiff)(x0, state, 4, cotangent)
          assert.isBelow(relativeError(vectorValue(fast.x), vectorValue(slow.x)), 1e-5, `${dynamics.name} x`)
          slow.state.forEach((s, i) =>
            assert.isBelow(relativeError(vectorValue(fast.state[i]!), vectorValue(s)), 1e-5, `${dynamics.name} state ${i}`)
          )
        }
      }))

    it.effect("whole hypergradients (RHG, IA-GM with momentum and with FISTA, IAPTT-GM) agree with the autodiff path", () =>
      Effect.gen(function*() {
        const { autodiff, problem, x0, y0 } = smoothProblem({ dimX: 3, dimY: 8 })
        const solvers = [
          Solver.make(gd).pipe(Solver.take(30)),
          Solver.make(momentum).pipe(Solver.auxiliaryInit, Solver.take(30)),
          Solver.make(accelerated).pipe(Solver.auxiliaryInit, Solver.take(30)),
          Solver.make(gd).pipe(Solver.auxiliaryInit, Solver.take(30), Solver.truncatePessimistic)
        ]
        for (const solver of solvers) {
          const fast = yield* Solver.solve(solver, problem, x0, y0)
          const slow = yield* Solver.solve(solver, autodiff, x0, y0)
          assert.strictEqual(fast.kbar, slow.kbar)
          assert.isBelow(relativeError(vectorValue(fast.gradX), vectorValue(slow.gradX)), 1e-5, solver.dynamics.name)
          assert.isBelow(relativeError(vectorValue(fast.gradZ), vectorValue(slow.gradZ)), 1e-5, solver.dynamics.name)
        }
      }))

    it.effect("the forward step keeps its linearization, and each reverse step gets that of its own point", () =>
      Effect.gen(function*() {
        const { autodiff, problem, x0, y0 } = smoothProblem({ dimX: 3, dimY: 8 })
        // A product that refuses to recompute: every reverse step must be handed residuals.
        const strict = {
          ...problem,
          lowerHessianVectorProduct: (x: tf.Tensor, y: tf.Tensor, v: tf.Tensor, residuals?: ReadonlyArray<tf.Tensor>) => {
            if (residuals === undefined) throw new Error("a reverse step got no residuals")
            return problem.lowerHessianVectorProduct!(x, y, v, residuals)
          }
        }
        for (const dynamics of [gd, momentum, accelerated]) {
          const solver = Solver.make(dynamics).pipe(Solver.take(12))
          const fast = yield* Solver.solve(solver, strict, x0, y0)
          const slow = yield* Solver.solve(solver, autodiff, x0, y0)
          assert.isBelow(relativeError(vectorValue(fast.gradX), vectorValue(slow.gradX)), 1e-5, solver.dynamics.name)
        }
        for (const dynamics of [gd, momentum, accelerated]) assert.isDefined(dynamics.linearizedStep?.(problem), dynamics.name)
        assert.isUndefined(gd.linearizedStep?.(autodiff))
        assert.isUndefined(gd.linearizedStep?.({ ...problem, projectY: (y) => tf.clipByValue(y, -1, 1) }))
        // Residuals that are not of the step's own point change the hypergradient: the check above can fail.
        const shifted = {
          ...problem,
          lowerHessianVectorProduct: (x: tf.Tensor, y: tf.Tensor, v: tf.Tensor, residuals?: ReadonlyArray<tf.Tensor>) =>
            problem.lowerHessianVectorProduct!(x, y, v, residuals?.map((r) => tf.add(r, 0.1)))
        }
        const wrong = yield* Solver.solve(Solver.make(gd).pipe(Solver.take(12)), shifted, x0, y0)
        const right = yield* Solver.solve(Solver.make(gd).pipe(Solver.take(12)), autodiff, x0, y0)
        assert.isAbove(relativeError(vectorValue(wrong.gradX), vectorValue(right.gradX)), 1e-3)
      }))

    it.effect("BDA: the closed-form VJP from both objectives' products equals autodiff, per step and through the hypergradient", () =>
      Effect.gen(function*() {
        const { autodiff, problem, x0, y0 } = smoothProblem({ dimX: 3, dimY: 8 })
        // F coupled to x (F + ⟨Ex, y⟩), so that the x part of the upper product is not zero.
        const rng = makeRng(5)
        const e = tf.tensor2d(rng.array(8 * 3, rng.normal), [8, 3])
        const ex = (x: tf.Tensor) => tf.reshape(tf.matMul(e, tf.reshape(x, [3, 1])), [8])
        const upper = (x: tf.Tensor, y: tf.Tensor) => tf.add(autodiff.upper(x, y), tf.sum(tf.mul(ex(x), y)))
        const slowProblem = { ...autodiff, upper }
        const fastProblem = {
          ...problem,
          upper,
          upperGradient: (x: tf.Tensor, y: tf.Tensor) => tf.add(problem.upperGradient!(x, y), ex(x)),
          upperHessianVectorProduct: (x: tf.Tensor, y: tf.Tensor, v: tf.Tensor) => {
            const product = problem.upperHessianVectorProduct!(x, y, v)
            return { y: product.y, x: tf.add(product.x, tf.reshape(tf.matMul(tf.transpose(e), tf.reshape(v, [8, 1])), [3])) }
          }
        }
        const dynamics = bda({ mu0: 0.5, upperLr: 0.2, lowerLr: 0.3 })
        const random = () => tf.tensor1d(rng.array(8, rng.normal))
        for (const k of [0, 3]) {
          const [state, cotangent] = [[random()], [random()]]
          const fast = dynamics.vjp!(fastProblem)!(x0, state, k, cotangent)
          const slow = stepVjp(dynamics, slowProblem)(x0, state, k, cotangent)
          assert.isBelow(relativeError(vectorValue(fast.x), vectorValue(slow.x)), 1e-5, `step ${k}: x`)
          assert.isBelow(relativeError(vectorValue(fast.state[0]!), vectorValue(slow.state[0]!)), 1e-5, `step ${k}: y`)
        }
        const solver = Solver.make(dynamics).pipe(Solver.take(20))
        const fast = yield* Solver.solve(solver, fastProblem, x0, y0)
        const slow = yield* Solver.solve(solver, slowProblem, x0, y0)
        assert.isBelow(relativeError(vectorValue(fast.gradX), vectorValue(slow.gradX)), 1e-5)
        // Without F's product (or f's) BDA has no closed form.
        const { upperHessianVectorProduct: _, ...noUpperProduct } = problem
        assert.isUndefined(dynamics.vjp?.(noUpperProduct))
        assert.isUndefined(dynamics.vjp?.({ ...autodiff, upperHessianVectorProduct: fastProblem.upperHessianVectorProduct }))
      }))

    it.effect("used only where it is exact: no hook or a projection onto Y falls back to autodiff", () =>
      Effect.sync(() => {
        const { autodiff, problem } = smoothProblem({ dimX: 2, dimY: 2 })
        assert.isDefined(gd.vjp?.(problem))
        assert.isUndefined(gd.vjp?.(autodiff))
        assert.isUndefined(gd.vjp?.({ ...problem, projectY: (y) => tf.clipByValue(y, -1, 1) }))
        assert.isDefined(accelerated.vjp?.(problem))
        assert.isUndefined(accelerated.vjp?.(autodiff))
        assert.isUndefined(accelerated.vjp?.({ ...problem, projectY: (y) => tf.clipByValue(y, -1, 1) }))
        assert.isUndefined(accelerated.linearizedStep?.({ ...problem, projectY: (y) => tf.clipByValue(y, -1, 1) }))
      }))

    it.effect("hyper-cleaning: closed-form Hessian-vector products equal autodiff of ∇_y f, both nets, with or without the gradient's residuals", () =>
      Effect.sync(() => {
        const rng = makeRng(1)
        const [n, d, c] = [120, 30, 10]
        const data = Classifier.dataMatrix(rng.array(n * d, rng.uniform), n, d)
        const labels = tf.cast(tf.oneHot(tf.tensor1d(Array.from({ length: n }, () => rng.int(0, 9)), "int32"), c), "float32")
        for (const net of [Classifier.linear(d, c), Classifier.mlp(d, 7, c)]) {
          const x = tf.tensor1d(rng.array(n, rng.normal))
          const y = tf.tensor1d(net.initialWeights(rng))
          const v = tf.tensor1d(rng.array(net.size, rng.normal))
          const [slowX, slowY] = stepVjpOfGradient(net, data, labels, x, y, v)
          const { gradient, residuals } = Classifier.weightedLossLinearization(net, data, labels, x, y)
          assert.deepStrictEqual(vectorValue(gradient), vectorValue(Classifier.weightedLossGradient(net, data, labels, x, y)))
          for (const given of [undefined, residuals]) {
            const fast = Classifier.weightedLossHessianVectorProduct(net, data, labels, x, y, v, given)
            const what = `${net.kind}, residuals ${given === undefined ? "recomputed" : "given"}`
            assert.isBelow(relativeError(vectorValue(fast.x), vectorValue(slowX!)), 1e-5, `${what}: x`)
            assert.isBelow(relativeError(vectorValue(fast.y), vectorValue(slowY!)), 1e-5, `${what}: y`)
          }
          // The unweighted loss (F): its gradient against autodiff of the loss, its product against autodiff of that gradient.
          const meanLoss = (yy: tf.Tensor) => tf.mean(Classifier.crossEntropies(net, data, labels, yy))
          const gradient2 = Classifier.meanLossGradient(net, data, labels, y)
          assert.isBelow(relativeError(vectorValue(gradient2), vectorValue(tf.grad(meanLoss)(y))), 1e-5, `${net.kind}: ∇F`)
          const [slowUpper] = vjp((yy) => [Classifier.meanLossGradient(net, data, labels, yy!)], [y], [v])
          const fastUpper = Classifier.meanLossHessianVectorProduct(net, data, labels, y, v)
          assert.isBelow(relativeError(vectorValue(fastUpper), vectorValue(slowUpper!)), 1e-5, `${net.kind}: ∇²F·v`)
        }
      }))

    it.effect("hyper-cleaning: RHG, IAPTT-GM, IA-GM(A) and BDA hypergradients with the closed forms match autodiff", () =>
      Effect.gen(function*() {
        for (const net of ["linear", "mlp"]) {
          const settings = yield* Schema.decodeUnknownEffect(hyperCleaning.settings)({
            dataDir: syntheticData,
            trainSize: 50,
            valSize: 40,
            testSize: 10,
            net,
            hidden: 6,
            innerSteps: 8,
            innerLr: 0.5
          })
          const instance = yield* hyperCleaning.make(settings)
          const { lowerHessianVectorProduct, upperGradient, upperHessianVectorProduct, ...autodiff } = instance.problem
          assert.isDefined(lowerHessianVectorProduct)
          assert.isDefined(upperGradient)
          assert.isDefined(upperHessianVectorProduct)
          const build = <S>(method: { build: (s: typeof settings, m: S) => Solver.Bounded; settings: Schema.Codec<S, unknown> }, chosen = {}) =>
            method.build(settings, Schema.decodeUnknownSync(method.settings)(chosen))
          const variants = [
            ["rhg", build(rhg)],
            ["iaptt-gm", build(iapttGm)],
            ["ia-gm-a nesterov", build(iaGmA, { acceleration: "nesterov" })],
            ["ia-gm-a fista", build(iaGmA, { acceleration: "fista" })],
            ["bda", build(bdaMethod)]
          ] as const
          for (const [name, solver] of variants) {
            const fast = yield* Solver.solve(solver, instance.problem, instance.x0, instance.y0)
            const slow = yield* Solver.solve(solver, autodiff, instance.x0, instance.y0)
            assert.strictEqual(fast.kbar, slow.kbar)
            assert.isBelow(relativeError(vectorValue(fast.gradX), vectorValue(slow.gradX)), 1e-5, `${net} ${name}`)
            assert.isBelow(relativeError(vectorValue(fast.gradZ), vectorValue(slow.gradZ)), 1e-5, `${net} ${name}`)
          }
          // BDA's forward steps keep both objectives' linearizations, and every reverse step gets them: products that
          // refuse to recompute give the same hypergradient, bit for bit.
          const strict: BilevelProblem = {
            ...instance.problem,
            lowerHessianVectorProduct: (x, y, v, residuals) => {
              if (residuals === undefined) throw new Error("a reverse step got no residuals of f")
              return lowerHessianVectorProduct!(x, y, v, residuals)
            },
            upperHessianVectorProduct: (x, y, v, residuals) => {
              if (residuals === undefined) throw new Error("a reverse step got no residuals of F")
              return upperHessianVectorProduct!(x, y, v, residuals)
            }
          }
          const solver = bdaMethod.build(settings, Schema.decodeUnknownSync(bdaMethod.settings)({}))
          const kept = yield* Solver.solve(solver, strict, instance.x0, instance.y0)
          const { upperLinearization: _, ...unlinearized } = instance.problem
          const recomputed = yield* Solver.solve(solver, unlinearized, instance.x0, instance.y0)
          assert.deepStrictEqual(vectorValue(kept.gradX), vectorValue(recomputed.gradX), `${net} bda`)
        }
      }).pipe(Effect.scoped, Effect.provide(Rng.layer(0))))
  })
}

/** Autodiff of the closed-form ∇_y f along v: [∂/∂x, ∂/∂y] of ⟨∇_y f(x, y), v⟩. */
const stepVjpOfGradient = (
  net: Classifier.Classifier,
  data: Classifier.DataMatrix,
  labels: tf.Tensor,
  x: tf.Tensor,
  y: tf.Tensor,
  v: tf.Tensor
) => vjp((xx, yy) => [Classifier.weightedLossGradient(net, data, labels, xx!, yy!)], [x, y], [v])
