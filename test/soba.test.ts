/**
 * SOBA and AmIGO (issue 18): their presets, run through the real outer loop on a sampled
 * two-dimensional quadratic, follow their update rules written out here by hand in float64 (with
 * the samples the run draws); the adjoint v they carry survives checkpoint and resume bit for bit and
 * matters (a zeroed v changes the run); both converge to the problem's known x*.
 *
 *     f_s(x, y) = s (½ yᵀAy − yᵀBx)              s = 0.5 + U[0, 1) per LL draw
 *     F_r(x, y) = ½ r ‖y − c‖² + ½ μ ‖x‖²        r = 0.5 + U[0, 1) per UL draw
 *
 * so y*(x) = A⁻¹Bx whatever s, and E F(x, y*(x)) = ½‖A⁻¹Bx − c‖² + ½μ‖x‖² has its minimum at
 * x* = (MᵀM + μI)⁻¹Mᵀc, M = A⁻¹B.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Layer, Stream } from "effect"
import { readFileSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import type { BilevelProblem } from "../src/domain/Problem.ts"
import * as Random from "../src/domain/Random.ts"
import { gradientDescent } from "../src/dynamics/Dynamics.ts"
import { polynomial } from "../src/dynamics/schedules.ts"
import type { RandomSource } from "../src/domain/Rng.ts"
import * as Backend from "../src/runtime/Backend.ts"
import { firstStepDifference } from "../src/runtime/replay.ts"
import { resume, run } from "../src/runtime/run.ts"
import * as RunRecord from "../src/runtime/RunRecord.ts"
import { amigo, type Method, soba } from "../src/solvers/methods.ts"
import { scaleByPolynomialDecay, sgd } from "../src/solvers/optimizers.ts"
import { initialState, outerSteps, stepKey } from "../src/solvers/outerLoop.ts"
import * as Solver from "../src/solvers/Solver.ts"
import { scratchDir } from "./support/scratch.ts"
import { smoothProblem } from "./support/smoothProblem.ts"
import { vectorValue } from "./support/tf.ts"

const scratch = scratchDir("soba")

type V = ReadonlyArray<number>
type M = ReadonlyArray<V>
const A: M = [[2, 0.5], [0.5, 1]]
const B: M = [[1, -0.5], [0.3, 0.8]]
const c: V = [1, -1]
const mu = 0.1

const matVec = (m: M, v: V): Array<number> => m.map((row) => row[0]! * v[0]! + row[1]! * v[1]!)
const transposeVec = (m: M, v: V): Array<number> => [m[0]![0]! * v[0]! + m[1]![0]! * v[1]!, m[0]![1]! * v[0]! + m[1]![1]! * v[1]!]
const add = (a: V, b: V, scale = 1): Array<number> => a.map((ai, i) => ai + scale * b[i]!)
const inverse = (m: M): M => {
  const det = m[0]![0]! * m[1]![1]! - m[0]![1]! * m[1]![0]!
  return [[m[1]![1]! / det, -m[0]![1]! / det], [-m[1]![0]! / det, m[0]![0]! / det]]
}
const product = (a: M, b: M): M => [0, 1].map((i) => [0, 1].map((j) => a[i]![0]! * b[0]![j]! + a[i]![1]! * b[1]![j]!))
const transpose = (m: M): M => [[m[0]![0]!, m[1]![0]!], [m[0]![1]!, m[1]![1]!]]

/** The LL weight s and UL weight r of one draw: the source's first and second uniforms. */
const weights = (random: RandomSource) => ({ s: 0.5 + random.uniform(), r: 0.5 + random.uniform() })

const quadratic = (sampled: boolean): BilevelProblem => {
  const a = tf.tensor2d(A.flat(), [2, 2])
  const b = tf.tensor2d(B.flat(), [2, 2])
  const target = tf.tensor1d([...c])
  const column = (v: tf.Tensor) => tf.reshape(v, [2, 1])
  const on = ({ r, s }: { readonly s: number; readonly r: number }): BilevelProblem => ({
    lower: (x, y) =>
      tf.mul(s, tf.sub(tf.mul(0.5, tf.sum(tf.mul(y, tf.reshape(tf.matMul(a, column(y)), [2])))), tf.sum(tf.mul(y, tf.reshape(tf.matMul(b, column(x)), [2]))))),
    upper: (x, y) => tf.add(tf.mul(0.5 * r, tf.sum(tf.square(tf.sub(y, target)))), tf.mul(0.5 * mu, tf.sum(tf.square(x))))
  })
  return sampled ? { ...on({ s: 1, r: 1 }), sample: (random) => on(weights(random)) } : on({ s: 1, r: 1 })
}

/** The weights the run draws at (outer step t, purpose, index) below the root key `seed`. */
const drawn = (seed: number, t: number, purpose: string, index: number) =>
  weights(Random.random(Random.path(stepKey(Random.key(seed), t), purpose, index)))

interface State {
  readonly x: V
  readonly y: V
  /** The adjoint in the framework's sign, v → (∇²_yy f)⁻¹ ∇_y F. */
  readonly v: V
}

/**
 * SOBA as its paper writes it (Dagréou et al. 2022, Alg. 1; benchmark_bilevel's solvers/soba.py),
 * with its own sign, w = −v → −(∇²_yy f)⁻¹∇_y F: from (y, w, x) on one LL sample s and one UL sample r,
 *   D_y = ∇_y f_s,  D_w = ∇²_yy f_s w + ∇_y F_r,  D_x = ∇²_xy f_s w + ∇_x F_r,
 *   y ← y − ρ_t D_y,  w ← w − ρ_t D_w,  x ← x − β_t D_x,   ρ_t = ρ/(t + 1)^p, β_t = β/(t + 1)^q.
 */
const sobaByHand = (
  seed: number,
  rho0: number,
  decay: number,
  beta0: number,
  variant: "simultaneous" | "sequential" = "simultaneous",
  betaDecay = 0
) =>
(state: State, t: number): State => {
  const rho = rho0 / Math.pow(t + 1, decay)
  const beta = beta0 / Math.pow(t + 1, betaDecay)
  const { s } = drawn(seed, t, "lower", 0)
  const { r } = drawn(seed, t, "upper", 0)
  const { x } = state
  const w = state.v.map((vi) => -vi)
  const dy = matVec(A, state.y).map((ay, i) => s * (ay - matVec(B, x)[i]!))
  const next = add(state.y, dy, -rho)
  // The sequential variant (not SOBA) takes D_w and D_x at the new y.
  const y = variant === "simultaneous" ? state.y : next
  const dw = add(matVec(A, w).map((aw) => s * aw), add(y, c, -1).map((d) => r * d))
  const dx = add(transposeVec(B, w).map((bw) => -s * bw), x.map((xi) => mu * xi))
  return { y: next, v: add(w, dw, -rho).map((wi) => -wi), x: add(x, dx, -beta) }
}

/**
 * AmIGO (Arbel & Mairal 2022, Alg. 1; benchmark_bilevel's solvers/amigo.py): T SGD steps on y from
 * the previous y, M SGD steps v ← v − η(∇²_yy f_s v − ∇_y F_r) from the previous v on fresh draws, the
 * cross term on one more fresh draw, then x ← x − β(∇_x F_r − ∇²_xy f_s v).
 */
const amigoByHand = (seed: number, rho: number, beta: number, innerSteps: number, adjointSteps: number) => (state: State, t: number): State => {
  const { x } = state
  let y = state.y
  for (let k = 0; k < innerSteps; k++) {
    const { s } = drawn(seed, t, "lower", k)
    y = add(y, matVec(A, y).map((ay, i) => s * (ay - matVec(B, x)[i]!)), -rho)
  }
  const { r } = drawn(seed, t, "upper", 0)
  const gradY = add(y, c, -1).map((d) => r * d)
  let v = state.v
  for (let j = 0; j < adjointSteps; j++) {
    const { s } = drawn(seed, t, "adjoint", j)
    v = add(v, add(matVec(A, v).map((av) => s * av), gradY, -1), -rho)
  }
  const { s } = drawn(seed, t, "adjoint", adjointSteps)
  const hypergradient = add(x.map((xi) => mu * xi), transposeVec(B, v).map((bv) => s * bv))
  return { x: add(x, hypergradient, -beta), y, v }
}

/** x* of E F(x, y*(x)): (MᵀM + μI)⁻¹ Mᵀ c with M = A⁻¹B. */
const xStar = (() => {
  const m = product(inverse(A), B)
  const normal = product(transpose(m), m).map((row, i) => row.map((value, j) => value + (i === j ? mu : 0)))
  return matVec(inverse(normal), transposeVec(m, c))
})()

const x0: V = [0.5, -0.3]
const y0: V = [0.2, 0.1]

/** The first `steps` outer steps of `method`'s preset through the outer loop, SGD(β/(t+1)^q) on x: (x, y, v) after each. */
const pipeline = (
  method: Method,
  settings: object,
  sampled: boolean,
  seed: number,
  steps: number,
  inner: { innerLr: number; innerSteps: number },
  beta: number,
  betaDecay = 0
) =>
  Effect.gen(function*() {
    const solver = method.build(inner, settings)
    const optimizers = { x: betaDecay === 0 ? sgd(beta) : scaleByPolynomialDecay(beta, betaDecay), z: sgd(beta) }
    const [x, y] = [tf.tensor1d([...x0]), tf.tensor1d([...y0])]
    const initial = initialState(x, y, optimizers, Solver.initialAdjoint(solver, y))
    return yield* outerSteps(solver, quadratic(sampled), initial, optimizers, Random.key(seed)).pipe(
      Stream.take(steps),
      Stream.map((step) => ({
        x: vectorValue(step.after.x),
        y: vectorValue(step.after.z),
        v: vectorValue(step.after.adjoint!),
        hvps: step.solution.cost.hvps,
        innerSteps: step.solution.cost.innerSteps
      })),
      Stream.runCollect
    )
  })

const closeTo = (actual: V, expected: V, what: string) => {
  const scale = Math.max(1, ...expected.map(Math.abs))
  actual.forEach((a, i) => assert.approximately(a, expected[i]!, 2e-6 * scale, `${what}[${i}]: ${actual} vs ${expected}`))
}

layer(Layer.merge(Backend.layer("cpu"), NodeServices.layer))("SOBA and AmIGO", (it) => {
  it.effect("SOBA's preset follows its update rule written out by hand, samples included", () =>
    Effect.gen(function*() {
      const [seed, rho, beta, decay] = [3, 0.2, 0.1, 0.5]
      const steps = yield* pipeline(soba, { sobaDecay: decay }, true, seed, 3, { innerLr: rho, innerSteps: 50 }, beta)
      let state: State = { x: x0, y: y0, v: [0, 0] }
      for (const [t, step] of steps.entries()) {
        state = sobaByHand(seed, rho, decay, beta)(state, t)
        closeTo(step.x, state.x, `x_${t + 1}`)
        closeTo(step.y, state.y, `y_${t + 1}`)
        closeTo(step.v, state.v, `v_${t + 1}`)
        // One LL step (innerSteps is not SOBA's), one Hessian- and one cross-product.
        assert.deepStrictEqual([step.innerSteps, step.hvps], [1, 2])
      }
      // The rule evaluated at the new y (a sequential variant) is another trajectory, beyond the tolerance.
      const sequential = sobaByHand(seed, rho, decay, beta, "sequential")({ x: x0, y: y0, v: [0, 0] }, 0)
      assert.isAbove(Math.abs(sequential.v[0]! - steps[0]!.v[0]!), 1e-3)
      // So is one whose steps restart at ρ every outer step (ρ_2 = ρ/√3, not ρ).
      const restarted = sobaByHand(seed, rho, 0, beta)(sobaByHand(seed, rho, decay, beta)({ x: x0, y: y0, v: [0, 0] }, 0), 1)
      assert.isAbove(Math.abs(restarted.y[0]! - steps[1]!.y[0]!), 1e-3)
      // SOBA's analysis decreases x's step too, β_t = β/√(t+1): the UL optimizer scaleByPolynomialDecay.
      const decaying = yield* pipeline(soba, { sobaDecay: decay }, true, seed, 3, { innerLr: rho, innerSteps: 50 }, 0.5, 0.5)
      let byHand: State = { x: x0, y: y0, v: [0, 0] }
      for (const [t, step] of decaying.entries()) {
        byHand = sobaByHand(seed, rho, decay, 0.5, "simultaneous", 0.5)(byHand, t)
        closeTo(step.x, byHand.x, `x_${t + 1} with β_t`)
      }
      const constantBeta = sobaByHand(seed, rho, decay, 0.5)(sobaByHand(seed, rho, decay, 0.5)({ x: x0, y: y0, v: [0, 0] }, 0), 1)
      assert.isAbove(Math.abs(constantBeta.x[0]! - decaying[1]!.x[0]!), 1e-4, "β_2 = β/√2 is not β")
    }))

  it.effect("AmIGO's preset follows its update rule written out by hand, samples included", () =>
    Effect.gen(function*() {
      const [seed, rho, beta, innerSteps, adjointSteps] = [5, 0.2, 0.1, 4, 3]
      const steps = yield* pipeline(amigo, { amigoAdjointSteps: adjointSteps }, true, seed, 3, { innerLr: rho, innerSteps }, beta)
      let state: State = { x: x0, y: y0, v: [0, 0] }
      for (const [t, step] of steps.entries()) {
        state = amigoByHand(seed, rho, beta, innerSteps, adjointSteps)(state, t)
        closeTo(step.x, state.x, `x_${t + 1}`)
        closeTo(step.y, state.y, `y_${t + 1}`)
        closeTo(step.v, state.v, `v_${t + 1}`)
        assert.deepStrictEqual([step.innerSteps, step.hvps], [innerSteps, adjointSteps + 1])
      }
      // A cold adjoint (v from 0 at every step) differs from the carried one after the first step.
      const cold = amigoByHand(seed, rho, beta, innerSteps, adjointSteps)({ ...state, v: [0, 0] }, 3)
      const warm = amigoByHand(seed, rho, beta, innerSteps, adjointSteps)(state, 3)
      assert.isAbove(Math.abs(cold.v[0]! - warm.v[0]!), 1e-3)
    }))

  it.effect("SOBA and AmIGO converge to the known x* of the full-batch quadratic", () =>
    Effect.gen(function*() {
      const start = Math.hypot(x0[0]! - xStar[0]!, x0[1]! - xStar[1]!)
      assert.isAbove(start, 0.5)
      const inner = { innerLr: 0.3, innerSteps: 5 }
      // SOBA's single loop needs x slower than y and v (β < ρ: at β = ρ = 0.3 it diverges here).
      // Constant steps (sobaDecay = 0): full batch, nothing to average out.
      for (const [method, settings, steps, beta] of [[soba, { sobaDecay: 0 }, 500, 0.1], [amigo, { amigoAdjointSteps: 5 }, 300, 0.3]] as const) {
        const trajectory = yield* pipeline(method, settings, false, 0, steps, inner, beta)
        const { x } = trajectory.at(-1)!
        assert.isBelow(Math.hypot(x[0]! - xStar[0]!, x[1]! - xStar[1]!), 1e-4, `${method.name} ends at ${x}, x* = ${xStar}`)
      }
    }), { timeout: 60_000 })

  it.effect("the carried v survives checkpoint and resume bit for bit, and a zeroed v changes the run", () =>
    Effect.gen(function*() {
      for (const method of ["soba", "amigo"]) {
        const request = {
          task: "logreg-hpo",
          method,
          seed: 2,
          settings: { trainSize: 200, valSize: 100, testSize: 100, features: 5, lowerBatch: 20, outerSteps: 8, innerSteps: 3, innerLr: 1 }
        }
        const interrupted = (name: string) =>
          Effect.gen(function*() {
            const dir = path.join(scratch, `${method}-${name}`)
            yield* Effect.exit(run({ ...request, out: dir, checkpointEvery: 3, onStep: (r) => (r.t === 4 ? Effect.die("simulated crash") : Effect.void) }))
            return dir
          })
        const whole = yield* run({ ...request, out: path.join(scratch, `${method}-whole`), checkpointEvery: 0 })
        const reference = (yield* RunRecord.read(whole.runDir)).steps

        const dir = yield* interrupted("resumed")
        const checkpoint = JSON.parse(readFileSync(path.join(dir, RunRecord.files.checkpoint), "utf8"))
        assert.deepStrictEqual(checkpoint.adjoint.shape, [5])
        assert.strictEqual((yield* resume({ dir })).resumedFrom, 3)
        assert.isUndefined(firstStepDifference((yield* RunRecord.read(dir)).steps, reference), method)

        // The same checkpoint with v zeroed resumes into another run from its first step on.
        const zeroed = yield* interrupted("zeroed")
        const file = path.join(zeroed, RunRecord.files.checkpoint)
        const saved = JSON.parse(readFileSync(file, "utf8"))
        writeFileSync(file, JSON.stringify({ ...saved, adjoint: { ...saved.adjoint, data: Buffer.alloc(4 * 5).toString("base64") } }))
        yield* resume({ dir: zeroed })
        assert.strictEqual(firstStepDifference((yield* RunRecord.read(zeroed)).steps, reference)?.step, 3, method)

        // Without it, the checkpoint does not fit the method: a typed error that names the adjoint.
        const missing = yield* interrupted("missing")
        const { adjoint: _adjoint, ...withoutAdjoint } = JSON.parse(readFileSync(path.join(missing, RunRecord.files.checkpoint), "utf8"))
        writeFileSync(path.join(missing, RunRecord.files.checkpoint), JSON.stringify(withoutAdjoint))
        const error = yield* Effect.flip(resume({ dir: missing }))
        assert.strictEqual(error._tag, "RunRecordError")
        assert.include(error.message, "adjoint")
      }
    }), { timeout: 120_000 })

  it.effect("schedules over the run: outer step t of take(K) steps with the schedule's steps tK … tK + K − 1, reverse pass included", () =>
    Effect.gen(function*() {
      // smoothProblem has a closed-form HVP and linearization: the shifted step, linearized step and VJP all run.
      const { problem, x0: x, y0: y } = smoothProblem({ dimX: 3, dimY: 4 })
      const schedule = polynomial({ alpha: 0.4, power: 0.5 })
      const [t, K] = [2, 3]
      const continued = Solver.make(gradientDescent({ lr: schedule })).pipe(Solver.take(K), Solver.continueSchedules)
      const byHand = Solver.make(gradientDescent({ lr: { name: "shifted", at: (k) => schedule.at(t * K + k) } })).pipe(Solver.take(K))
      const restarted = Solver.make(gradientDescent({ lr: schedule })).pipe(Solver.take(K))
      const [a, b, c] = yield* Effect.forEach([
        Solver.solve(continued, problem, x, y, Random.key(0), { outerStep: t }),
        Solver.solve(byHand, problem, x, y),
        Solver.solve(restarted, problem, x, y)
      ], (solution) => Effect.map(solution, (s) => [...vectorValue(s.gradX), ...vectorValue(s.y)]))
      assert.deepStrictEqual(a, b)
      assert.notDeepEqual(a, c)
    }))

  it.effect("warmAdjoint without an amortized strategy, and schedules over the run without a fixed count, are refused, saying why", () =>
    Effect.gen(function*() {
      const descent = Solver.make(soba.build({ innerLr: 0.1, innerSteps: 1 }, { sobaDecay: 0.5 }).dynamics)
      const x = tf.tensor1d([...x0])
      const adjoint = yield* Effect.flip(Solver.solve(descent.pipe(Solver.take(2), Solver.warmAdjoint), quadratic(false), x, x))
      assert.strictEqual(adjoint._tag, "InvalidSolver")
      assert.include(adjoint.message, "amortized")
      const stopped = descent.pipe(Solver.take(5), Solver.stopAtResidual({ tolerance: 1e-3, alpha: 0.1 }), Solver.continueSchedules)
      const count = yield* Effect.flip(Solver.solve(stopped, quadratic(false), x, x))
      assert.include(count.message, "continueSchedules")
      assert.include(count.message, "take(K)")
    }))
})
