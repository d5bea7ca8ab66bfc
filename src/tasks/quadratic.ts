/**
 * A bilevel problem with a closed-form hypergradient, the ground truth strategies are
 * checked against:
 *
 *     f(x, y) = ½ yᵀA y − yᵀ(Bx + c),   A = I + s·GGᵀ/n ≻ 0   ⇒   y*(x) = A⁻¹(Bx + c)
 *     F(x, y) = ½‖y − t‖² + ½λ‖x‖²      ⇒   dF/dx = λx + Bᵀ A⁻¹ (y* − t)
 *
 * The data are drawn from the seed, rounded to float32 (so the float32 problem and the float64
 * closed form share them exactly), and the closed form is evaluated in float64 with ml-matrix.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Schema } from "effect"
import { CholeskyDecomposition, Matrix } from "ml-matrix"
import type { BilevelProblem, Vector } from "../domain/Problem.ts"
import { Rng } from "../domain/Rng.ts"
import { count, nonNegative, positive } from "../domain/settings.ts"
import { readVector } from "../domain/tensors.ts"
import { sgd } from "../solvers/optimizers.ts"
import { erase } from "./Task.ts"

const Settings = Schema.Struct({
  dimX: count(20, "dimension of the UL variable x"),
  dimY: count(20, "dimension of the LL variable y"),
  spread: nonNegative(1, "A = I + spread·GGᵀ/dimY ≻ 0: larger spreads the spectrum (worse conditioning)"),
  regularization: positive(0.01, "UL weight λ > 0 of ½λ‖x‖², which makes the bilevel solution x* unique"),
  outerSteps: count(200, "outer (UL) steps T"),
  innerSteps: count(100, "inner (LL) steps K"),
  innerLr: positive(0.2, "LL gradient step α (converges for α < 2/λ_max(A))"),
  outerLr: positive(0.5, "UL SGD step")
})
type Settings = typeof Settings.Type

/** The problem's data in float64 (values exactly representable in float32). */
export interface QuadraticData {
  readonly a: Matrix
  readonly b: Matrix
  readonly c: Matrix
  readonly t: Matrix
  readonly regularization: number
}

const draw = (rows: number, columns: number, f: () => number) =>
  new Matrix(Array.from({ length: rows }, () => Array.from({ length: columns }, () => Math.fround(f()))))

export const makeData = (rng: Rng["Service"], s: Pick<Settings, "dimX" | "dimY" | "spread" | "regularization">): QuadraticData => {
  const g = draw(s.dimY, s.dimY, rng.normal)
  const a = Matrix.eye(s.dimY).add(g.mmul(g.transpose()).mul(s.spread / s.dimY))
  return {
    a: a.apply((i, j) => a.set(i, j, Math.fround(a.get(i, j)))),
    b: draw(s.dimY, s.dimX, () => rng.normal() / Math.sqrt(s.dimX)),
    c: draw(s.dimY, 1, rng.normal),
    t: draw(s.dimY, 1, rng.normal),
    regularization: Math.fround(s.regularization)
  }
}

/** y*(x) = A⁻¹(Bx + c), in float64. */
export const exactLowerSolution = (data: QuadraticData, x: ReadonlyArray<number>): Matrix =>
  new CholeskyDecomposition(data.a).solve(data.b.mmul(Matrix.columnVector(x)).add(data.c))

/** dF(x, y*(x))/dx = λx + Bᵀ A⁻¹ (y*(x) − t), in float64. */
export const exactHypergradient = (data: QuadraticData, x: ReadonlyArray<number>): Array<number> => {
  const cholesky = new CholeskyDecomposition(data.a)
  const v = cholesky.solve(exactLowerSolution(data, x).sub(data.t))
  return data.b.transpose().mmul(v).add(Matrix.columnVector(x).mul(data.regularization)).to1DArray()
}

/** The bilevel solution x* = argmin_x F(x, y*(x)): (MᵀM + λI) x = −Mᵀ(A⁻¹c − t), M = A⁻¹B. */
export const exactSolution = (data: QuadraticData): Array<number> => {
  const cholesky = new CholeskyDecomposition(data.a)
  const m = cholesky.solve(data.b)
  const r = cholesky.solve(data.c).sub(data.t)
  const normal = m.transpose().mmul(m).add(Matrix.eye(m.columns).mul(data.regularization))
  return new CholeskyDecomposition(normal).solve(m.transpose().mmul(r).mul(-1)).to1DArray()
}

const toTensor = (m: Matrix) => tf.tensor2d(m.to2DArray())

const column = (v: Vector) => tf.reshape(v, [-1, 1])

export const quadratic = erase<Settings>({
  name: "quadratic",
  description: "Strongly convex quadratic LL with a closed-form hypergradient (ground truth for every strategy)",
  settings: Settings,
  // A, B, c, t in float64 on the host and float32 as tensors.
  size: ({ dimX, dimY }) => ({ y: dimY, residuals: dimY, dataBytes: 12 * (dimY * dimY + dimY * dimX + 2 * dimY) }),
  make: (settings) =>
    Effect.gen(function*() {
      const rng = yield* Rng
      const data = makeData(rng, settings)
      const [a, b, c, t] = yield* Effect.acquireRelease(
        Effect.sync(() => [toTensor(data.a), toTensor(data.b), toTensor(data.c), toTensor(data.t)] as const),
        (tensors) => Effect.sync(() => tf.dispose([...tensors]))
      )
      const problem: BilevelProblem = {
        lower: (x, y) =>
          tf.sub(
            tf.mul(0.5, tf.sum(tf.mul(column(y), tf.matMul(a, column(y))))),
            tf.sum(tf.mul(column(y), tf.add(tf.matMul(b, column(x)), c)))
          ),
        upper: (x, y) =>
          tf.add(
            tf.mul(0.5, tf.sum(tf.square(tf.sub(column(y), t)))),
            tf.mul(0.5 * data.regularization, tf.sum(tf.square(x)))
          )
      }
      const xStar = exactSolution(data)
      const x0 = Array.from(rng.array(settings.dimX, rng.normal))
      return {
        problem,
        x0: tf.tensor1d(x0),
        y0: tf.zeros([settings.dimY]),
        optimizers: { x: sgd(settings.outerLr), z: sgd(settings.outerLr) },
        exactHypergradient: (x) => exactHypergradient(data, x),
        metrics: (step) =>
          Effect.map(readVector(step.before.x), (x) => ({ xError: Math.hypot(...x.map((xi, i) => xi - xStar[i]!)) })),
        summarize: (steps) => ({ F: steps.at(-1)?.["F"], xError: steps.at(-1)?.["xError"] })
      }
    })
})
