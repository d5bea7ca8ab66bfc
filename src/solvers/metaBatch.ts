/**
 * The hypergradient of one outer step: the solver on the problem, or, for a problem that draws a
 * meta-batch of episodes, on each episode with its own LL variable, selection (PTT's k̄) and cost,
 * averaged. Both the hypergradient and the pipeline's value, so gradcheck differentiates exactly what
 * the outer loop steps along.
 *
 * An episode's x-only work (a backbone's features φ = encode(x)) runs once before its LL loop, and
 * its VJP once after it: the LL and reverse passes see φ as their x.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { type HypergradientFailed, InvalidSolver } from "../domain/errors.ts"
import type { BilevelProblem, Episode, Vector } from "../domain/Problem.ts"
import * as Random from "../domain/Random.ts"
import { tensorScope, tidy } from "../domain/tensors.ts"
import { type Bounded, describe, type Solution, type SolveContext, solve, upperAt } from "./Solver.ts"
import { vjp } from "./vjp.ts"

/**
 * dF/dx at (x, z) for the outer step keyed `key`: one problem, or the mean over its episodes.
 * `context` carries a warm adjoint's v and the outer step (see `solve`).
 */
export const hypergradientAt = (
  solver: Bounded,
  problem: BilevelProblem,
  x: Vector,
  z: Vector,
  key: Random.Key,
  context: SolveContext = {}
): Effect.Effect<Solution, InvalidSolver | HypergradientFailed> =>
  problem.episodes === undefined ? solve(solver, problem, x, z, key, context) : tensorScope(Effect.gen(function*() {
    if (solver.initialization === "warm" || solver.adjoint === "warm") {
      return yield* new InvalidSolver({
        solver: describe(solver),
        problem: `${solver.initialization === "warm" ? "warm start" : "warmAdjoint"} carries one LL variable from step to step, ` +
          "and a meta-batch has one per episode",
        hint: "Drop warmStart and warmAdjoint for episodic tasks (auxiliary-init learns a shared initialization instead)."
      })
    }
    const solutions: Array<Solution> = []
    for (const [b, episode] of drawEpisodes(problem, key).entries()) {
      // The episode's own scope: what the encoder keeps for its pullback lives until the pullback has run.
      solutions.push(yield* tensorScope(Effect.gen(function*() {
        const { pullback, value } = encoded(episode, x)
        const solution = yield* solve(solver, episode.problem, value, z, episodeKey(key, b))
        return { ...solution, gradX: tidy(() => pullback(solution.gradX)) }
      })))
    }
    return mean(solutions)
  }))

/** F(x, y_k̄) of the outer step keyed `key`, averaged over its episodes: what {@link hypergradientAt} differentiates. */
export const valueAt = (
  solver: Bounded,
  problem: BilevelProblem,
  x: Vector,
  z: Vector,
  key: Random.Key
): Effect.Effect<number, InvalidSolver> =>
  tensorScope(Effect.gen(function*() {
    const parts = problem.episodes === undefined
      ? [{ problem, x, key }]
      : drawEpisodes(problem, key).map((episode, b) => ({
        problem: episode.problem,
        x: tidy(() => (episode.encode === undefined ? x : episode.encode(x).value)),
        key: episodeKey(key, b)
      }))
    let total = 0
    for (const part of parts) total += yield* upperAt(solver, part.problem, part.x, z, part.key)
    return total / parts.length
  }))

/** The episodes of the outer step keyed `key`. */
const drawEpisodes = (problem: BilevelProblem, key: Random.Key): ReadonlyArray<Episode> =>
  problem.episodes!(Random.random(Random.foldIn(key, "episodes")))

/** Episode b's key: its draws are independent of the other episodes'. */
const episodeKey = (key: Random.Key, b: number) => Random.path(key, "episode", b)

/**
 * φ = encode(x) and the pullback of a cotangent of φ to x (identity without an encoder), in the
 * caller's tensor scope: the tensors the encoder keeps for its pullback are released with that scope.
 */
const encoded = (episode: Episode, x: Vector) => {
  if (episode.encode === undefined) return { value: x, pullback: (g: Vector) => g }
  const { value, vjp: pullback } = episode.encode(x)
  return { value, pullback }
}

/** The mean hypergradient and value, the mean k̄, summed costs (peak memory: the largest). */
const mean = (solutions: ReadonlyArray<Solution>): Solution => {
  const n = solutions.length
  const average = (pick: (s: Solution) => Vector) => tidy(() => tf.div(tf.addN(solutions.map(pick)), n))
  const sum = (pick: (s: Solution) => number) => solutions.reduce((total, s) => total + pick(s), 0)
  return {
    gradX: average((s) => s.gradX),
    gradZ: average((s) => s.gradZ),
    y: tidy(() => tf.stack(solutions.map((s) => s.y))),
    upper: sum((s) => s.upper) / n,
    kbar: sum((s) => s.kbar) / n,
    kbars: solutions.map((s) => s.kbar),
    cost: {
      innerSteps: sum((s) => s.cost.innerSteps),
      reverseSteps: sum((s) => s.cost.reverseSteps),
      hvps: sum((s) => s.cost.hvps),
      peakBytes: Math.max(...solutions.map((s) => s.cost.peakBytes))
    }
  }
}

/**
 * An encoder from a differentiable function, by autodiff: φ once, and its VJP recomputing φ on
 * tfjs's tape (tapes cannot outlive a synchronous call, and the LL loop between reads the host). A
 * backbone with a hand-written backward pass gives its own pullback over its forward pass's tensors
 * instead, and runs forward once.
 */
export const encodeBy = (f: (x: Vector) => Vector): NonNullable<Episode["encode"]> => (x) => ({
  value: f(x),
  vjp: (cotangent) => vjp((xx) => [f(xx!)], [x], [cotangent])[0]!
})
