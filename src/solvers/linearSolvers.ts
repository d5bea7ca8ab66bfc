/**
 * Matrix-free linear solvers for the implicit hypergradient's system A v = b. Each is a stream of
 * iterates cut by take(J) and an optional tolerance stop — the same combinators as the LL loop.
 *
 * A solver iterates either on one matrix (`draws: "fixed"`: CG and the deterministic Neumann series
 * need A to stay put) or on a fresh draw A_j of a sampled problem at each product j (`"fresh"`: the
 * stochastic adjoints of SID and StocBiO, which converge in expectation).
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Option, Stream } from "effect"
import { HypergradientFailed } from "../domain/errors.ts"
import type { Vector } from "../domain/Problem.ts"
import { dot, readScalar, readVector } from "../domain/tensors.ts"
import { iterateLazily } from "../dynamics/iterateLazily.ts"
import { type StepSize, stepSizeAt, stepSizeName } from "../dynamics/schedules.ts"

export interface LinearSolver {
  readonly name: string
  /** Whether product j may use its own draw of A (`"fresh"`) or all use one (`"fixed"`). */
  readonly draws: "fixed" | "fresh"
  /** Solves A v = b given v ↦ A_j v (its j-th product); reports the number of products with A. */
  readonly solve: (matvec: (v: Vector, j: number) => Vector, b: Vector) => Effect.Effect<{
    readonly solution: Vector
    readonly matvecs: number
  }, HypergradientFailed>
}

interface CgIterate {
  readonly i: number
  readonly v: Vector
  readonly r: Vector
  readonly p: Vector
  readonly rr: tf.Scalar
  /** The smallest and largest Rayleigh quotient pᵀAp / pᵀp met so far, [min, max]. */
  readonly curvature: tf.Tensor
}

/** Below −this × the largest curvature met, A is indefinite beyond float32 rounding. */
const indefinite = 1e-4

/**
 * Conjugate gradient for symmetric positive-definite A (LS): J iterations, or fewer once
 * ‖r‖ ≤ tolerance (which costs one host sync per iteration). Where A turns out indefinite (a
 * direction of clearly negative curvature: ∇²_yy f at an LL point that is no minimum), the solve
 * fails with `HypergradientFailed` rather than return a meaningless solution — unless `indefinite`
 * is `"skip"`: then it steps along no direction of non-positive curvature and returns what it has,
 * as an LS baseline that ignores its premise does (the IAPTT-GM paper's Fig. 1).
 */
export const conjugateGradient = (options: {
  readonly iterations: number
  readonly tolerance?: number
  readonly indefinite?: "fail" | "skip"
}): LinearSolver => ({
  name: `cg(${options.iterations})`,
  draws: "fixed",
  solve: (matvec, b) => {
    const iterates = iterateLazily(
      (): CgIterate => ({ i: 0, v: tf.zerosLike(b), r: b, p: b, rr: dot(b, b), curvature: tf.tensor1d([Infinity, 0]) }),
      (s) =>
        tf.tidy(() => {
          const ap = matvec(s.p, s.i)
          // Breakdown guard: where pᵀAp is not clearly positive (r = 0 once converged, or A singular, as
          // when y has coordinates f ignores) no step is taken, rather than one that explodes to NaN.
          const curvature = dot(s.p, ap)
          const quotient = tf.divNoNan(curvature, dot(s.p, s.p))
          const [low, high] = tf.unstack(s.curvature)
          const step = tf.where(tf.greater(curvature, tf.mul(1e-10, dot(s.p, s.p))), tf.divNoNan(s.rr, curvature), tf.zerosLike(curvature))
          const r = tf.sub(s.r, tf.mul(step, ap))
          const rr = dot(r, r)
          return {
            i: s.i + 1,
            v: tf.add(s.v, tf.mul(step, s.p)),
            r,
            p: tf.add(r, tf.mul(tf.divNoNan(rr, s.rr), s.p)),
            rr,
            curvature: tf.stack([tf.minimum(low!, quotient), tf.maximum(high!, quotient)])
          }
        }),
      (s) => releaseExcept(b, [s.v, s.r, s.p, s.rr, s.curvature])
    )
    const stopped = options.tolerance === undefined
      ? iterates
      : Stream.takeUntilEffect(iterates, (s) => Effect.map(readScalar(s.rr), (rr) => Math.sqrt(rr) <= options.tolerance!))
    return Stream.runLast(Stream.take(stopped, options.iterations + 1)).pipe(
      Effect.map(Option.getOrThrow),
      Effect.flatMap((s) =>
        Effect.flatMap(readVector(s.curvature), ([low, high]) => {
          s.curvature.dispose()
          return options.indefinite !== "skip" && low! < -indefinite * Math.abs(high!)
            ? Effect.fail(
              new HypergradientFailed({
                strategy: `cg(${options.iterations})`,
                problem: `the system matrix ∇²_yy f is indefinite at the LL point (curvature pᵀAp/pᵀp from ${low!.toPrecision(3)} ` +
                  `to ${high!.toPrecision(3)} along CG's directions), so the LL has not reached a minimum and the implicit ` +
                  "hypergradient's premise fails",
                hint: "Take more inner steps (innerSteps, innerLr), or use a strategy without that premise (rhg, ns, aid-fp)."
              })
            )
            : Effect.succeed({ solution: s.v, matvecs: s.i })
        })
      )
    )
  }
})

/**
 * Neumann series (NS): v = α Σ_{i=0}^{J} (I − αA)^i b, i.e. J steps of the Richardson iteration.
 * With α = 1 and A = I − ∂_yΦ this is the fixed-point adjoint iteration v ← (∂_yΦ)ᵀ v + b (AID-FP).
 * With `draws: "fresh"` the i-th factor is its own draw, term_i = Π_{j<i} (I − αA_j) b: StocBiO's
 * stochastic Neumann series (Ji, Yang, Liang, ICML 2021, Alg. 3).
 */
export const neumann = (options: {
  readonly terms: number
  readonly alpha: number
  readonly draws?: "fixed" | "fresh"
}): LinearSolver => ({
  name: `neumann(${options.terms}, α=${options.alpha}${options.draws === "fresh" ? ", fresh draws" : ""})`,
  draws: options.draws ?? "fixed",
  solve: (matvec, b) => {
    const iterates = iterateLazily(
      () => ({ i: 0, term: b, v: tf.mul(options.alpha, b) }),
      (s) =>
        tf.tidy(() => {
          const term = tf.sub(s.term, tf.mul(options.alpha, matvec(s.term, s.i)))
          return { i: s.i + 1, term, v: tf.add(s.v, tf.mul(options.alpha, term)) }
        }),
      (s) => releaseExcept(b, [s.term, s.v])
    )
    return lastOf(Stream.take(iterates, options.terms + 1), (s) => ({ solution: s.v, matvecs: s.i }))
  }
})

/** A linear solver that can also start from a given guess v_0 (an amortized adjoint's previous v). */
export interface WarmStartable extends LinearSolver {
  /** Iterations per solve. */
  readonly iterations: number
  /**
   * As `solve`, from v_0 = `initial` (the caller's tensor; 0 when absent), its step j counted as step
   * `firstStep` + j of a longer run for its step-size schedule.
   */
  readonly solveFrom: (
    matvec: (v: Vector, j: number) => Vector,
    b: Vector,
    initial: Vector | undefined,
    firstStep: number
  ) => ReturnType<LinearSolver["solve"]>
}

/**
 * The stochastic fixed-point iteration of SID (Grazzi, Pontil, Salzo, AISTATS 2021):
 * v_{j+1} = v_j + η_j (b − A_j v_j) from v_0 = 0, A_j a fresh draw. With A = I − ∂_yΦ̂ this is
 * v_{j+1} = (1 − η_j) v_j + η_j ((∂_yΦ̂_j)ᵀ v_j + b), whose mean-square error vanishes as O(1/k) under
 * η_j = β/(γ + j) with β above the contraction's threshold. J iterations make J − 1 products (v_1 = η_0 b).
 *
 * It is also SGD on the quadratic ½vᵀAv − bᵀv, which is how AmIGO and SOBA solve for their adjoint:
 * `solveFrom` starts it at their previous v, and then J iterations make J products.
 */
export const stochasticFixedPoint = (options: { readonly iterations: number; readonly stepSize: StepSize }): WarmStartable => {
  const run = (matvec: (v: Vector, j: number) => Vector, b: Vector, initial: Vector | undefined, firstStep: number) => {
    // From 0 the first product is A·0: skipped, so v_1 = η_0 b and product j uses draw j − 1.
    const skipped = initial === undefined ? 1 : 0
    const iterates = iterateLazily(
      () => ({ i: 0, v: initial ?? tf.zerosLike(b) }),
      (s) =>
        tf.tidy(() => {
          const eta = stepSizeAt(options.stepSize, firstStep + s.i)
          const residual = s.i < skipped ? b : tf.sub(b, matvec(s.v, s.i - skipped))
          return { i: s.i + 1, v: tf.add(s.v, tf.mul(eta, residual)) }
        }),
      (s) => releaseExcept(b, s.v === initial ? [] : [s.v])
    )
    return lastOf(Stream.take(iterates, options.iterations + 1), (s) => ({ solution: s.v, matvecs: Math.max(s.i - skipped, 0) }))
  }
  return {
    name: `stochastic-fixed-point(${options.iterations}, η=${stepSizeName(options.stepSize)})`,
    draws: "fresh",
    iterations: options.iterations,
    solve: (matvec, b) => run(matvec, b, undefined, 0),
    solveFrom: run
  }
}

/** Frees a solver iterate's tensors once the next exists; b is the caller's. */
const releaseExcept = (b: Vector, tensors: ReadonlyArray<tf.Tensor>) => tf.dispose(tensors.filter((t) => t !== b))

/** The last element of a finite solver stream, mapped. */
const lastOf = <S, A>(stream: Stream.Stream<S>, f: (s: S) => A) =>
  Stream.runLast(stream).pipe(Effect.map((last) => f(Option.getOrThrow(last))))
