/**
 * The UL loop as a stream of outer steps: each element solves for the hypergradient at (x_t, z_t)
 * and steps x (and, with auxiliary-init, z) with the UL optimizers. take(T), tap(record),
 * tap(progress) then apply to it like to any other stream.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Stream } from "effect"
import { Diverged, type HypergradientFailed, type InvalidSolver } from "../domain/errors.ts"
import type { BilevelProblem, Vector } from "../domain/Problem.ts"
import * as Random from "../domain/Random.ts"
import { identity, norm, readScalar, readVector, tensorScope, tidy } from "../domain/tensors.ts"
import { type GradientTransformation, type OptState, stateTensors, step } from "./optimizers.ts"
import { hypergradientAt } from "./metaBatch.ts"
import type { Bounded, Solution } from "./Solver.ts"

export interface OuterState {
  readonly t: number
  readonly x: Vector
  /** The LL initialization: learned under auxiliary-init, the last y_k̄ under warm start, fixed otherwise. */
  readonly z: Vector
  /** Under `warmAdjoint`: the amortized adjoint v the next hypergradient starts from. */
  readonly adjoint?: Vector
  readonly xOptimizer: OptState
  readonly zOptimizer: OptState
}

export interface OuterStep {
  /** The point the hypergradient was computed at (x_t, z_t). */
  readonly before: OuterState
  readonly solution: Solution
  /** ‖dF/dx‖ (and ‖dF/dz‖ under auxiliary-init). */
  readonly hypergradNorm: number
  /** (x_{t+1}, z_{t+1}). */
  readonly after: OuterState
  readonly ms: number
}

export interface UpperOptimizers {
  readonly x: GradientTransformation
  /** Steps z under auxiliary-init (the official hyper-cleaning code uses the LL's own SGD here). */
  readonly z: GradientTransformation
}

/**
 * The initial outer state; the loop takes ownership of copies of x_0 and z_0, and of v_0 when given
 * (`Solver.initialAdjoint`, for a solver under `warmAdjoint`).
 */
export const initialState = (x0: Vector, z0: Vector, optimizers: UpperOptimizers, adjoint0?: Vector): OuterState =>
  tidy(() => {
    const x = tf.clone(x0)
    const z = tf.clone(z0)
    return {
      t: 0,
      x,
      z,
      ...(adjoint0 === undefined ? {} : { adjoint: tf.clone(adjoint0) }),
      xOptimizer: optimizers.x.init(x),
      zOptimizer: optimizers.z.init(z)
    }
  })

const tensorsOf = (s: OuterState) => [
  s.x,
  s.z,
  ...(s.adjoint === undefined ? [] : [s.adjoint]),
  ...stateTensors(s.xOptimizer),
  ...stateTensors(s.zOptimizer)
]

/**
 * Σ 0·v: 0 when every entry of v is finite, NaN as soon as one is NaN or ±Inf. Unlike a norm, it
 * cannot overflow on large finite entries.
 */
const nonFinite = (v: Vector): tf.Scalar => tf.sum(tf.mul(v, 0))

/** Whether every entry of each tensor is finite, in one host read. */
const finiteEach = (tensors: ReadonlyArray<Vector>): Effect.Effect<Array<boolean>> =>
  Effect.map(readVector(tf.tidy(() => tf.stack(tensors.map(nonFinite)))), (values) => values.map(Number.isFinite))

/** A host view of a vector for an error message: its entries when few, its norm otherwise. */
const describeVector = (name: string, v: Vector): Effect.Effect<Record<string, unknown>> =>
  v.size <= 8
    ? Effect.map(readVector(v), (values) => ({ [name]: values }))
    : Effect.map(readScalar(tf.tidy(() => norm(v))), (n) => ({ [`‖${name}‖`]: n }))

/** The last step whose values were all finite, or the initial point when there is none. */
const lastFiniteOf = (step: OuterStep | undefined, initial: OuterState): Effect.Effect<Record<string, unknown>> =>
  step === undefined
    ? describeVector("x", initial.x)
    : Effect.map(describeVector("x", step.before.x), (x) => ({
      step: step.before.t,
      F: step.solution.upper,
      hypergradNorm: step.hypergradNorm,
      ...x
    }))

/** The key of outer step t's draws (minibatches, episodes) below a run's key. */
export const stepKey = (key: Random.Key, t: number): Random.Key => Random.foldIn(key, t)

const outerStep = (solver: Bounded, problem: BilevelProblem, optimizers: UpperOptimizers, key: Random.Key) =>
(before: OuterState, previous: OuterStep | undefined): Effect.Effect<OuterStep, OuterStepError> =>
  tensorScope(Effect.gen(function*() {
    const started = performance.now()
    const solution = yield* hypergradientAt(solver, problem, before.x, before.z, stepKey(key, before.t), {
      ...(before.adjoint === undefined ? {} : { adjoint: before.adjoint }),
      outerStep: before.t
    })
    const learnsZ = solver.initialization === "auxiliary"
    const [hypergradNorm, ...checks] = (yield* readVector(tf.tidy(() =>
      tf.stack([
        learnsZ ? tf.sqrt(tf.add(tf.square(norm(solution.gradX)), tf.square(norm(solution.gradZ)))) : norm(solution.gradX),
        nonFinite(solution.gradX),
        ...(learnsZ ? [nonFinite(solution.gradZ)] : [])
      ])
    ))) as [number, ...Array<number>]
    if (!Number.isFinite(solution.upper) || !Number.isFinite(hypergradNorm) || !checks.every(Number.isFinite)) {
      return yield* new Diverged({
        step: before.t,
        quantity: Number.isFinite(solution.upper) ? "the hypergradient" : "the UL objective F",
        lastFinite: yield* lastFiniteOf(previous, before)
      })
    }
    const after = tidy((): OuterState => {
      const [x, xOptimizer] = step(optimizers.x, before.x, solution.gradX, before.xOptimizer, problem.projectX)
      const [z, zOptimizer] = learnsZ
        ? step(optimizers.z, before.z, solution.gradZ, before.zOptimizer, problem.projectY ?? identity)
        : [tf.clone(solver.initialization === "warm" ? solution.y : before.z), before.zOptimizer]
      const adjoint = solution.adjoint ?? before.adjoint
      return { t: before.t + 1, x, z, ...(adjoint === undefined ? {} : { adjoint: tf.clone(adjoint) }), xOptimizer, zOptimizer }
    })
    const [xFinite, zFinite, adjointFinite = true] = yield* finiteEach([after.x, after.z, ...(after.adjoint === undefined ? [] : [after.adjoint])])
    const current = { before, solution, hypergradNorm, after, ms: performance.now() - started } satisfies OuterStep
    if (!xFinite || !zFinite || !adjointFinite) {
      return yield* new Diverged({
        step: before.t,
        quantity: !xFinite ? "x after the UL update" : !zFinite ? "z (the LL initialization) after the UL update" : "the carried adjoint v",
        lastFinite: yield* lastFiniteOf(current, before)
      })
    }
    return current
  }))

/** How an outer step fails: a non-finite value, a strategy that broke down, a solver that does not fit. */
export type OuterStepError = Diverged | HypergradientFailed | InvalidSolver

/**
 * Outer steps from `initial`, forever (cut it with `Stream.take(T)`). An element's tensors stay
 * valid until the next element is pulled; then the loop releases them. Fails with `Diverged` at
 * the first non-finite F, hypergradient, or x (z) after the update; its tensors are then released
 * by the enclosing scope. Step t draws its samples below `stepKey(key, t)`, so a resumed loop draws
 * what the uninterrupted one did.
 */
export const outerSteps = (
  solver: Bounded,
  problem: BilevelProblem,
  initial: OuterState,
  optimizers: UpperOptimizers,
  key: Random.Key
): Stream.Stream<OuterStep, OuterStepError> => {
  const next = outerStep(solver, problem, optimizers, key)
  return Stream.unfold({ state: initial, previous: undefined as OuterStep | undefined }, ({ previous, state }) =>
    next(state, previous).pipe(
      Effect.map((current) => {
        if (previous !== undefined) release(previous, current)
        return [current, { state: current.after, previous: current }] as const
      })
    ))
}

/** Releases an outer step's tensors except the state the next step starts from. */
const release = (previous: OuterStep, current: OuterStep) => {
  const keep = new Set(tensorsOf(current.before).map((t) => t.id))
  const s = previous.solution
  tf.dispose([...tensorsOf(previous.before), s.gradX, s.gradZ, s.y, ...(s.adjoint === undefined ? [] : [s.adjoint])].filter((t) => !keep.has(t.id)))
}
