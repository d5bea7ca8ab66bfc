/**
 * The UL loop as a stream of outer steps: each element solves for the hypergradient at (x_t, z_t)
 * and steps x (and, with auxiliary-init, z) with the UL optimizers. take(T), tap(record),
 * tap(progress) then apply to it like to any other stream.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Stream } from "effect"
import { Diverged } from "../domain/errors.ts"
import type { BilevelProblem, Vector } from "../domain/Problem.ts"
import { identity, norm, scalarValue, tensorScope, tidy } from "../domain/tensors.ts"
import { type GradientTransformation, type OptState, stateTensors, step } from "./optimizers.ts"
import { type Solution, type Solver, solve } from "./Solver.ts"

export interface OuterState {
  readonly t: number
  readonly x: Vector
  /** The LL initialization: learned under auxiliary-init, fixed otherwise. */
  readonly z: Vector
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

/** The initial outer state; the loop takes ownership of copies of x_0 and z_0. */
export const initialState = (x0: Vector, z0: Vector, optimizers: UpperOptimizers): OuterState =>
  tidy(() => {
    const x = tf.clone(x0)
    const z = tf.clone(z0)
    return { t: 0, x, z, xOptimizer: optimizers.x.init(x), zOptimizer: optimizers.z.init(z) }
  })

const tensorsOf = (s: OuterState) => [s.x, s.z, ...stateTensors(s.xOptimizer), ...stateTensors(s.zOptimizer)]

const outerStep = (solver: Solver, problem: BilevelProblem, optimizers: UpperOptimizers) =>
(before: OuterState): Effect.Effect<OuterStep, Diverged> =>
  tensorScope(Effect.gen(function*() {
    const started = performance.now()
    const solution = yield* solve(solver, problem, before.x, before.z)
    const learnsZ = solver.initialization === "auxiliary"
    const hypergradNorm = scalarValue(tf.tidy(() =>
      learnsZ ? tf.sqrt(tf.add(tf.square(norm(solution.gradX)), tf.square(norm(solution.gradZ)))) : norm(solution.gradX)
    ))
    if (!Number.isFinite(solution.upper) || !Number.isFinite(hypergradNorm)) {
      return yield* new Diverged({
        step: before.t,
        quantity: Number.isFinite(solution.upper) ? "the hypergradient" : "the UL objective F",
        lastFinite: { F: solution.upper, hypergradNorm }
      })
    }
    const after = tidy((): OuterState => {
      const [x, xOptimizer] = step(optimizers.x, before.x, solution.gradX, before.xOptimizer, problem.projectX)
      const [z, zOptimizer] = learnsZ
        ? step(optimizers.z, before.z, solution.gradZ, before.zOptimizer, problem.projectY ?? identity)
        : [tf.clone(before.z), before.zOptimizer]
      return { t: before.t + 1, x, z, xOptimizer, zOptimizer }
    })
    return { before, solution, hypergradNorm, after, ms: performance.now() - started } satisfies OuterStep
  }))

/**
 * Outer steps from `initial`, forever (cut it with `Stream.take(T)`). An element's tensors stay
 * valid until the next element is pulled; then the loop releases them. Fails with `Diverged` at
 * the first non-finite F or hypergradient.
 */
export const outerSteps = (
  solver: Solver,
  problem: BilevelProblem,
  initial: OuterState,
  optimizers: UpperOptimizers
): Stream.Stream<OuterStep, Diverged> => {
  const next = outerStep(solver, problem, optimizers)
  return Stream.unfold({ state: initial, previous: undefined as OuterStep | undefined }, ({ previous, state }) =>
    next(state).pipe(
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
  tf.dispose([...tensorsOf(previous.before), s.gradX, s.gradZ, s.y].filter((t) => !keep.has(t.id)))
}
