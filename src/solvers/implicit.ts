/**
 * Implicit hypergradients (LS, NS, AID-FP), JAXopt-style: an optimality condition c(x, y) = 0 that
 * the LL solution satisfies, and a linear solver. By the implicit function theorem
 *
 *     Aᵀ v = ∇_y F(x, y*),   dF/dx = ∇_x F(x, y*) − Bᵀ v,   A = ∂_y c,  B = ∂_x c
 *
 * Both transposed Jacobian products are one VJP of c, so a new condition is a single function.
 * Projections are ignored: the condition is that of an interior LL solution.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import type { BilevelProblem, Residuals, Vector } from "../domain/Problem.ts"
import { type Dynamics, lowerGradient } from "../dynamics/Dynamics.ts"
import { iterateY, LowerLevel } from "../dynamics/Iterate.ts"
import type { HypergradientFailed } from "../domain/errors.ts"
import type { HypergradientParts, HypergradientStrategy } from "./Hypergradient.ts"
import type { LinearSolver, WarmStartable } from "./linearSolvers.ts"
import { gradients, vjp } from "./vjp.ts"

/** c(x, y) with c(x, y*(x)) = 0. */
export interface OptimalityCondition {
  readonly name: string
  readonly residual: (problem: BilevelProblem, x: Vector, y: Vector) => Vector
  /**
   * Aᵀ v and Bᵀ v (the residual's Jacobians in y and x, transposed, along v) in closed form, where the
   * problem has them (`lowerHessianVectorProduct`): no tape per product, and with `residuals` (the
   * problem's `lowerLinearization` at (x, y)) no recomputation of the point's intermediates either.
   * Absent, or undefined for a problem without the hook: both by autodiff of `residual`.
   */
  readonly transposedJacobians?: (
    problem: BilevelProblem,
    x: Vector,
    y: Vector,
    v: Vector,
    residuals?: Residuals
  ) => { readonly x: Vector; readonly y: Vector } | undefined
}

/** Stationarity, c = ∇_y f: A = ∇²_yy f (symmetric, so CG applies), B = ∇²_xy f. */
export const stationarity: OptimalityCondition = {
  name: "∇_y f = 0",
  residual: (problem, x, y) => lowerGradient(problem, x, y, 0),
  transposedJacobians: (problem, x, y, v, residuals) => problem.lowerHessianVectorProduct?.(x, y, v, residuals)
}

/** Fixed point of one gradient step, c = y − Φ(x, y) with Φ = y − α ∇_y f: A = I − ∂_yΦ. */
export const fixedPoint = (alpha: number): OptimalityCondition => ({
  name: `y = y − ${alpha}∇_y f`,
  residual: (problem, x, y) => tf.mul(alpha, lowerGradient(problem, x, y, 0)),
  transposedJacobians: (problem, x, y, v, residuals) => {
    const products = problem.lowerHessianVectorProduct?.(x, y, v, residuals)
    return products && { x: tf.mul(alpha, products.x), y: tf.mul(alpha, products.y) }
  }
})

/**
 * Fixed point of any LL map Φ (a dynamics whose state is y alone), c = y − Φ(x, y): A = I − ∂_yΦ,
 * B = −∂_xΦ, so the hypergradient is ∇_x F + (∂_xΦ)ᵀ v with v = (∂_yΦ)ᵀ v + ∇_y F. On a sampled
 * problem each product differentiates the map of its own draw (SID's Φ̂_j).
 */
export const fixedPointOf = (map: Dynamics): OptimalityCondition => ({
  name: `y = ${map.name}(y)`,
  residual: (problem, x, y) => tf.sub(y, map.step(problem, x, map.init(y), 0)[0]!)
})

/**
 * The implicit strategy: solve Aᵀ v = ∇_y F at the selected iterate, then ∇_x F − Bᵀ v. A solver
 * with fresh draws takes its j-th product on the draw ("adjoint", j) and Bᵀ v on the next unused
 * one; others use the draw ("adjoint", 0) throughout, so CG and Neumann iterate on one matrix.
 */
export const implicit = (condition: OptimalityCondition, solver: LinearSolver): HypergradientStrategy<"none"> => ({
  name: `implicit(${condition.name}, ${solver.name})`,
  initGradient: "none",
  exact: false,
  needsPrefix: false,
  compute: (_dynamics, trajectory) =>
    Effect.flatMap(Effect.service(LowerLevel), ({ at }) =>
      adjointHypergradient(
        condition,
        iterateY(trajectory.selected),
        solver.draws === "fresh" ? (j) => at("adjoint", j) : at("adjoint", 0),
        (matvec, b) => solver.solve(matvec, b),
        (solution) => solution
      ))
})

/**
 * The amortized implicit strategy (AmIGO, Arbel & Mairal, ICLR 2022; SOBA, Dagréou et al., NeurIPS
 * 2022): as `implicit`, but the adjoint solve starts from the previous outer step's v, so a few
 * stochastic steps per outer step track v*(x) as x moves. `at: "selected"` (AmIGO) solves at the
 * selected iterate on fresh draws and steps x with the new v. `at: "start"` (SOBA's single loop)
 * takes its adjoint step at y_0 on the LL draw of the step from y_0, and the hypergradient with the
 * previous v, so y, v and x all step from (y_t, v_t, x_t) on one sample, as SOBA's simultaneous
 * update does. The sign is `implicit`'s: v → (∇²_yy f)⁻¹ ∇_y F, the negative of
 * SOBA's paper's v.
 */
export const amortized = (
  condition: OptimalityCondition,
  solver: WarmStartable,
  options: { readonly at: "selected" | "start" }
): HypergradientStrategy<"none"> => ({
  name: `amortized(${condition.name}, ${solver.name}${options.at === "start" ? ", at y_0" : ""})`,
  initGradient: "none",
  exact: false,
  needsPrefix: options.at === "start",
  amortized: true,
  compute: (_dynamics, trajectory, { adjoint, outerStep }) =>
    Effect.flatMap(Effect.service(LowerLevel), ({ at }) => {
      const simultaneous = options.at === "start"
      const iterate = simultaneous ? trajectory.prefix[0]! : trajectory.selected
      return adjointHypergradient(
        condition,
        iterateY(iterate),
        simultaneous ? at("lower", iterate.k) : solver.draws === "fresh" ? (j) => at("adjoint", j) : at("adjoint", 0),
        (matvec, b) => solver.solveFrom(matvec, b, adjoint, outerStep * solver.iterations),
        (solution) => simultaneous ? adjoint ?? tf.zerosLike(solution) : solution
      )
    })
})

/**
 * ∇_x F − Bᵀ v at (x, y) with Aᵀ v = ∇_y F solved by `solveAdjoint`, v = `stepWith(solution)`;
 * the solution is returned as the parts' adjoint. `problem` is the one draw every product is taken
 * on — drawn once, with its linearization at (x, y) computed once for all of them — or, for fresh
 * draws, product j's (and then Bᵀ v's) draw. Its tensors are the enclosing solve's (`Solver.solve`
 * releases them).
 */
const adjointHypergradient = (
  condition: OptimalityCondition,
  y: Vector,
  problem: BilevelProblem | ((j: number) => BilevelProblem),
  solveAdjoint: LinearSolver["solve"],
  stepWith: (solution: Vector) => Vector
): Effect.Effect<HypergradientParts, HypergradientFailed, LowerLevel> =>
  Effect.gen(function*() {
    const { at, meter, x } = yield* LowerLevel
    const [gx, gy] = gradients((xx, yy) => at("upper", 0).upper(xx!, yy!), [x, y])
    const fixed = typeof problem === "function" ? undefined : problem
    const residuals = condition.transposedJacobians && fixed?.lowerLinearization?.(x, y).residuals
    const drawn = typeof problem === "function" ? problem : () => problem
    const products = (j: number, v: Vector) => condition.transposedJacobians?.(drawn(j), x, y, v, residuals)
    const transposedA = (v: Vector, j: number) => {
      const av = tf.tidy(() => products(j, v)?.y ?? vjp((yy) => [condition.residual(drawn(j), x, yy!)], [y], [v])[0]!)
      meter.sample()
      return av
    }
    const { matvecs, solution } = yield* solveAdjoint(transposedA, gy!)
    const hypergradient = tf.tidy(() => {
      const v = stepWith(solution)
      const bv = products(matvecs, v)?.x ?? vjp((xx) => [condition.residual(drawn(matvecs), xx!, y)], [x], [v])[0]!
      return tf.sub(gx!, bv)
    })
    return { x: hypergradient, y0: tf.zerosLike(y), reverseSteps: 0, hvps: matvecs + 1, adjoint: solution }
  })
