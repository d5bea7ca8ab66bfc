/**
 * Stochastic hypergradients (issue 18): SID on the full batch equals the deterministic fixed-point
 * hypergradient (AID-FP); SID's mean-square error against the float64 exact hypergradient falls as
 * t and k grow; SID and StocBiO follow their update rules written out by hand on a sampled 2-D
 * quadratic.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Layer, Schema } from "effect"
import type { BilevelProblem } from "../src/domain/Problem.ts"
import * as Random from "../src/domain/Random.ts"
import { Rng } from "../src/domain/Rng.ts"
import { readVector } from "../src/domain/tensors.ts"
import * as Backend from "../src/runtime/Backend.ts"
import { aidFp, type Method, sid, stocbio } from "../src/solvers/methods.ts"
import { solve } from "../src/solvers/Solver.ts"
import { logregHpo } from "../src/tasks/logregHpo.ts"
import type { TaskInstance } from "../src/tasks/Task.ts"
import { relativeError } from "./support/tf.ts"

const small = { trainSize: 200, valSize: 100, testSize: 10, features: 5, dataSeed: 1 }

const instance = (settings: Record<string, unknown>) =>
  Schema.decodeUnknownEffect(logregHpo.settings)({ ...small, ...settings }).pipe(
    Effect.orDie,
    Effect.flatMap(logregHpo.make),
    Effect.provide(Rng.layer(0))
  )

const build = (method: Method, inner: { innerSteps: number; innerLr: number }, settings: Record<string, unknown>) =>
  Effect.map(Schema.decodeUnknownEffect(method.settings)(settings).pipe(Effect.orDie), (s) => method.build(inner, s))

/** dF/dx of `method` at the task's x_0, drawing below seed `seed`. */
const hypergradient = (task: TaskInstance, method: Method, inner: { innerSteps: number; innerLr: number }, settings: Record<string, unknown>, seed = 0) =>
  Effect.gen(function*() {
    const solver = yield* build(method, inner, settings)
    const solution = yield* solve(solver, task.problem, task.x0, task.y0, Random.key(seed))
    return yield* readVector(solution.gradX)
  })

/** Mean over `seeds` of ‖estimate − exact‖². */
const mse = (task: TaskInstance, inner: { innerSteps: number; innerLr: number }, settings: Record<string, unknown>, seeds: number) =>
  Effect.gen(function*() {
    const exact = task.exactHypergradient!(yield* readVector(task.x0))
    let total = 0
    for (let seed = 0; seed < seeds; seed++) {
      const g = yield* hypergradient(task, sid, inner, settings, seed)
      total += g.reduce((s, gi, i) => s + (gi - exact[i]!) ** 2, 0)
    }
    return total / seeds
  })

layer(Layer.merge(Backend.layer("cpu"), NodeServices.layer), { timeout: 300_000 })("stochastic hypergradients", (it) => {
  it.effect("SID with B = n and η ≡ 1 equals AID-FP (k − 1 fixed-point terms) to float32 precision", () =>
    Effect.gen(function*() {
      const task = yield* instance({ lowerBatch: small.trainSize, regularization: "per-feature" })
      const inner = { innerSteps: 50, innerLr: 1 }
      const stochastic = yield* hypergradient(task, sid, inner, { sidSchedule: "constant", sidBeta: 1, sidGamma: 1, adjointSteps: 30 })
      const full = yield* instance({ regularization: "per-feature" })
      const deterministic = yield* hypergradient(full, aidFp, inner, { fpIters: 29 })
      assert.isBelow(relativeError(stochastic, deterministic), 1e-6, `${stochastic} vs ${deterministic}`)
      assert.isAbove(Math.hypot(...deterministic), 1e-3)
    }).pipe(Effect.scoped))

  it.effect("SID's mean-square error over 20 seeds falls as t grows (k large) and as k grows (t large)", () =>
    Effect.gen(function*() {
      const task = yield* instance({ lowerBatch: 10 })
      const steps = { sidBeta: 4, sidGamma: 8 }
      const inT = [yield* mse(task, { innerSteps: 20, innerLr: 1 }, { ...steps, adjointSteps: 200 }, 20),
        yield* mse(task, { innerSteps: 200, innerLr: 1 }, { ...steps, adjointSteps: 200 }, 20)]
      const inK = [yield* mse(task, { innerSteps: 200, innerLr: 1 }, { ...steps, adjointSteps: 20 }, 20), inT[1]!]
      assert.isBelow(inT[1]!, inT[0]! / 3, `MSE at t = 20, 200: ${inT}`)
      assert.isBelow(inK[1]!, inK[0]! / 3, `MSE at k = 20, 200: ${inK}`)
    }).pipe(Effect.scoped))

  // A sampled 2-D quadratic: f_ξ(x, y) = ½ yᵀA_ξ y − yᵀ(Bx + c), ξ one of three matrices;
  // F(x, y) = ½‖y − e‖² + ½‖x‖².
  const matrices = [[[2, 0.5], [0.5, 1]], [[1.5, -0.2], [-0.2, 0.8]], [[1, 0.3], [0.3, 2.2]]]
  const B = [[1, 0.5], [-0.3, 0.8]]
  const c = [0.2, -0.1]
  const e = [1, -1]
  const matVec = (m: ReadonlyArray<ReadonlyArray<number>>, v: tf.Tensor) =>
    tf.reshape(tf.matMul(tf.tensor2d(m as Array<Array<number>>), tf.reshape(v, [2, 1])), [2])
  const quadraticOn = (a: ReadonlyArray<ReadonlyArray<number>>): BilevelProblem => ({
    lower: (x, y) => tf.sub(tf.mul(0.5, tf.sum(tf.mul(y, matVec(a, y)))), tf.sum(tf.mul(y, tf.add(matVec(B, x), tf.tensor1d(c))))),
    upper: (x, y) => tf.add(tf.mul(0.5, tf.sum(tf.square(tf.sub(y, tf.tensor1d(e))))), tf.mul(0.5, tf.sum(tf.square(x))))
  })
  const pick = (random: { int: (a: number, b: number) => number }) => random.int(0, 2)
  const sampled: BilevelProblem = { ...quadraticOn(matrices[0]!), sample: (random) => quadraticOn(matrices[pick(random)]!) }
  /** The matrix drawn at (purpose, index) below `key`: the same source the problem's sampler gets. */
  const drawn = (key: Random.Key, purpose: string, index: number) => matrices[pick(Random.random(Random.path(key, purpose, index)))]!
  const mv = (m: ReadonlyArray<ReadonlyArray<number>>, v: ReadonlyArray<number>) => m.map((row) => row[0]! * v[0]! + row[1]! * v[1]!)
  const mtv = (m: ReadonlyArray<ReadonlyArray<number>>, v: ReadonlyArray<number>) => [0, 1].map((j) => m[0]![j]! * v[0]! + m[1]![j]! * v[1]!)
  const x = [0.4, -0.7]
  const key = Random.key(5)

  it.effect("SID follows its update rules written out by hand on a sampled 2-D quadratic", () =>
    Effect.gen(function*() {
      const [t, k, alpha, beta, gamma] = [6, 5, 0.3, 2, 3]
      const solver = sid.build({ innerSteps: t, innerLr: alpha }, { sidSchedule: "decreasing", sidBeta: beta, sidGamma: gamma, adjointSteps: k, warmStart: false })
      const solution = yield* solve(solver, sampled, tf.tensor1d(x), tf.tensor1d([0.5, 0.5]), key)
      // w_{s+1} = (1 − η_s) w_s + η_s (w_s − α(A_s w_s − (Bx + c))), η_s = β/(γ + s)
      const bxc = mv(B, x).map((v, i) => v + c[i]!)
      let w = [0.5, 0.5]
      for (let s = 0; s < t; s++) {
        const eta = beta / (gamma + s)
        const a = drawn(key, "lower", s)
        const phi = w.map((wi, i) => wi - alpha * (mv(a, w)[i]! - bxc[i]!))
        w = w.map((wi, i) => (1 - eta) * wi + eta * phi[i]!)
      }
      // v_1 = η_0 ∇_y F; v_{j+1} = (1 − η_j) v_j + η_j ((I − αA_{j−1}) v_j + ∇_y F), A_{j−1} the draw ("adjoint", j − 1)
      const gy = w.map((wi, i) => wi - e[i]!)
      let v = gy.map((g) => (beta / gamma) * g)
      for (let j = 1; j < k; j++) {
        const eta = beta / (gamma + j)
        const a = drawn(key, "adjoint", j - 1)
        const jv = v.map((vi, i) => vi - alpha * mtv(a, v)[i]!)
        v = v.map((vi, i) => (1 - eta) * vi + eta * (jv[i]! + gy[i]!))
      }
      // ∇_x F + (∂_xΦ)ᵀ v with ∂_xΦ = αB
      const expected = x.map((xi, i) => xi + alpha * mtv(B, v)[i]!)
      assert.isBelow(relativeError(yield* readVector(solution.gradX), expected), 1e-5)
    }).pipe(Effect.scoped))

  it.effect("StocBiO follows its update rules written out by hand on a sampled 2-D quadratic", () =>
    Effect.gen(function*() {
      const [K, Q, alpha] = [6, 4, 0.3]
      const eta = alpha
      const solver = stocbio.build({ innerSteps: K, innerLr: alpha }, { stocbioTerms: Q, warmStart: false })
      const solution = yield* solve(solver, sampled, tf.tensor1d(x), tf.tensor1d([0.5, 0.5]), key)
      // y_{s+1} = y_s − α(A_s y_s − (Bx + c))
      const bxc = mv(B, x).map((v, i) => v + c[i]!)
      let y = [0.5, 0.5]
      for (let s = 0; s < K; s++) {
        const a = drawn(key, "lower", s)
        y = y.map((yi, i) => yi - alpha * (mv(a, y)[i]! - bxc[i]!))
      }
      // v = η Σ_{q=0}^{Q} Π_{j<q} (I − ηA_j) ∇_y F, A_j the draw ("adjoint", j)
      let term = y.map((yi, i) => yi - e[i]!)
      let v = term.map((g) => eta * g)
      for (let q = 0; q < Q; q++) {
        const a = drawn(key, "adjoint", q)
        term = term.map((ti, i) => ti - eta * mv(a, term)[i]!)
        v = v.map((vi, i) => vi + eta * term[i]!)
      }
      // ∇_x F − (∂_x∇_y f)ᵀ v = x + Bᵀ v
      const expected = x.map((xi, i) => xi + mtv(B, v)[i]!)
      assert.isBelow(relativeError(yield* readVector(solution.gradX), expected), 1e-5)
    }).pipe(Effect.scoped))
})
