/**
 * `bilevel gradcheck`: a method's hypergradient at a task's initial point against ground truth —
 * the task's closed form where it has one, otherwise central finite differences of the very
 * pipeline the method differentiates, F(x, y_k̄(x, z)), in the coordinates of x (and z under
 * auxiliary-init), or along random directions when there are too many coordinates.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import type { Cost } from "../domain/Cost.ts"
import type { HypergradientFailed, InvalidSolver } from "../domain/errors.ts"
import * as Random from "../domain/Random.ts"
import { Rng } from "../domain/Rng.ts"
import { identity, readVector, tensorScope } from "../domain/tensors.ts"
import { at } from "../dynamics/selection.ts"
import { hypergradientAt, valueAt } from "../solvers/metaBatch.ts"
import type { Method } from "../solvers/methods.ts"
import { stepKey } from "../solvers/outerLoop.ts"
import { type Bounded, select } from "../solvers/Solver.ts"
import type { Task, TaskInstance } from "../tasks/Task.ts"
import { Backend } from "./Backend.ts"
import { checkMemory } from "./memoryEstimate.ts"
import { checkCombination, resolveMethod, resolveSettings } from "./settings.ts"
import { resolveTask } from "./taskModule.ts"

export interface GradcheckRequest {
  /** As in a `RunRequest`: a built-in task's name, a module path, a name in `taskModule`, or a `Task`. */
  readonly task: string | Task
  readonly taskModule?: string | undefined
  readonly method: string | Method
  readonly seed: number
  readonly settings: Record<string, unknown>
  /** Finite-difference step: the largest coordinate move, relative to the size of the coordinates moved (default 0.1). */
  readonly step?: number | undefined
  /** Above this many coordinates, compare along this many random directions instead. */
  readonly directions?: number | undefined
}

export interface GradcheckResult {
  readonly task: string
  readonly method: string
  readonly relError: number
  readonly reference: "closed-form" | "finite-difference"
  /** What was compared: the coordinates of x (and z), or random directions. */
  readonly compared: string
  readonly hypergradient: ReadonlyArray<number>
  readonly expected: ReadonlyArray<number>
  readonly cost: Cost
  /** Present when the strategy is not the derivative of the finite pipeline, so a gap is its bias. */
  readonly note?: string
}

/** Of the fourth-order stencil (see {@link finiteDifferences}); measured on hyper-cleaning between 0.03 and 0.3. */
export const defaultStep = 0.1

/** Implicit, truncated and first-order strategies estimate something other than d/dx of the K-step pipeline. */
const approximationNote = (solver: Bounded): { readonly note?: string } =>
  solver.hypergradient.exact
    ? {}
    : {
      note: `${solver.hypergradient.name} is not the exact derivative of the K-step pipeline: implicit strategies ` +
        "assume a converged LL, truncated reverse drops early steps, first-order drops second-order terms. " +
        "A gap to finite differences is that bias; it vanishes as the LL converges (raise innerSteps/innerLr, lastM)."
    }

// Loops, not spread arguments: an MLP's LL weights alone are 238k coordinates, past the call-stack limit.
const euclidean = (v: ReadonlyArray<number>) => Math.sqrt(v.reduce((s, vi) => s + vi * vi, 0))
const largest = (v: ReadonlyArray<number>) => v.reduce((m, vi) => Math.max(m, Math.abs(vi)), 0)

const relativeError = (a: ReadonlyArray<number>, b: ReadonlyArray<number>) =>
  euclidean(a.map((ai, i) => ai - b[i]!)) / Math.max(euclidean(b), 1e-12)

/**
 * Differences of the pipeline along each of `directions` in the joint (x, z) space: central
 * fourth-order (five points, ±h and ±2h), or, where ±2h would leave X or Y, central second-order at
 * a third of the step, or, where even that would (a point on the boundary, like the toy's z_0 = 2),
 * one-sided second-order differences taken inward — the side the hypergradient through a projection
 * is the derivative of. Fourth order because the pipeline runs in float32: the rounding error of a
 * difference quotient grows as 1/h, and a truncation error that shrinks as h⁴ lets h grow. Measured
 * on hyper-cleaning (RHG, K = 5, 40 examples; relative error to the hypergradient): second order
 * 3.3e-4 (linear) and 6.3e-4 (mlp) at its best h = 0.03, fourth order 1.1e-4 and 2.1e-4 at h = 0.1.
 */
const finiteDifferences = (
  solver: Bounded,
  key: Random.Key,
  instance: TaskInstance,
  point: ReadonlyArray<number>,
  dimX: number,
  directions: ReadonlyArray<ReadonlyArray<number>>,
  step: number
) => Effect.gen(function*() {
  const { projectX = identity, projectY = identity } = instance.problem
  const fixedZ = yield* readVector(instance.y0)
  const split = (p: ReadonlyArray<number>) => [p.slice(0, dimX), p.length > dimX ? p.slice(dimX) : fixedZ] as const
  const feasible = (p: ReadonlyArray<number>) => {
    const [x, z] = split(p)
    const same = (v: ReadonlyArray<number>, project: (t: tf.Tensor) => tf.Tensor) =>
      // Against the float32 the point becomes: a move that merely rounds is not a move out of the set.
      tensorScope(Effect.map(readVector(project(tf.tensor1d([...v]))), (w) => w.every((wi, i) => wi === Math.fround(v[i]!))))
    return Effect.map(Effect.all([same(x, projectX), same(z, projectY)]), ([a, b]) => a && b)
  }
  const value = (p: ReadonlyArray<number>) =>
    tensorScope(Effect.suspend(() => {
      const [x, z] = split(p)
      return valueAt(solver, instance.problem, tf.tensor1d([...x]), tf.tensor1d([...z]), key)
    }))
  return yield* Effect.forEach(directions, (d) =>
    Effect.gen(function*() {
      // The largest coordinate moves by step × the size of the coordinates it moves (1 where they are
      // all 0): small LL weights get small moves, and along a random unit direction in n dimensions,
      // where each coordinate moves only ~h/√n, the step grows so float32 rounding does not drown it.
      const scale = (largest(point.filter((_, i) => d[i] !== 0)) || 1) / largest(d)
      const wide = step * scale
      const along = (t: number) => point.map((p, i) => p + t * wide * d[i]!)
      const [wideForward, wideBackward] = yield* Effect.all([feasible(along(2)), feasible(along(-2))])
      if (wideForward && wideBackward) {
        const [p1, m1, p2, m2] = yield* Effect.all([value(along(1)), value(along(-1)), value(along(2)), value(along(-2))])
        return (8 * (p1 - m1) - (p2 - m2)) / (12 * wide)
      }
      const h = wide / 3
      const at = (t: number) => point.map((p, i) => p + t * h * d[i]!)
      const [forward, backward] = yield* Effect.all([feasible(at(1)), feasible(at(-1))])
      if (forward && backward) {
        const [plus, minus] = yield* Effect.all([value(at(1)), value(at(-1))])
        return (plus - minus) / (2 * h)
      }
      const side = forward ? 1 : -1
      const [f0, f1, f2] = yield* Effect.all([value(at(0)), value(at(side)), value(at(2 * side))])
      return side * (-3 * f0 + 4 * f1 - f2) / (2 * h)
    }))
})

/**
 * Checks any solver's hypergradient at (x_0, y_0) of a task instance: against its closed form when
 * it has one, else against finite differences of the solver's own pipeline. A sampled problem's
 * samples (minibatches, episodes) are those of the run's first outer step, held fixed: every
 * perturbed pipeline regenerates the same ones.
 */
export const checkSolver = Effect.fnUntraced(function*(
  solver: Bounded,
  instance: TaskInstance,
  options: { readonly step?: number | undefined; readonly directions?: number | undefined; readonly seed?: number } = {}
): Effect.fn.Return<Omit<GradcheckResult, "task" | "method">, InvalidSolver | HypergradientFailed, Rng> {
  const rng = yield* Rng
  const key = stepKey(Random.key(options.seed ?? 0), 0)
  const solution = yield* hypergradientAt(solver, instance.problem, instance.x0, instance.y0, key)
  const x = yield* readVector(instance.x0)
  const gradX = yield* readVector(solution.gradX)
  if (instance.exactHypergradient) {
    const expected = instance.exactHypergradient(x)
    return {
      relError: relativeError(gradX, expected),
      reference: "closed-form" as const,
      compared: "x",
      hypergradient: gradX,
      expected,
      cost: solution.cost
    }
  }
  const learnsZ = solver.initialization === "auxiliary"
  const point = learnsZ ? [...x, ...(yield* readVector(instance.y0))] : x
  const gradient = learnsZ ? [...gradX, ...(yield* readVector(solution.gradZ))] : gradX
  const count = options.directions ?? 16
  const coordinates = point.length <= count * 4
  // Random directions stay inside one block, x or z, so each block is probed at its own scale.
  const blocks: ReadonlyArray<readonly [number, number]> = learnsZ ? [[0, x.length], [x.length, point.length]] : [[0, x.length]]
  const directions = coordinates
    ? point.map((_, i) => point.map((__, j) => (i === j ? 1 : 0)))
    : Array.from({ length: count }, (_, k) => {
      const [from, to] = blocks[k % blocks.length]!
      const d = Array.from(point, (__, i) => (i >= from && i < to ? rng.normal() : 0))
      const n = euclidean(d)
      return d.map((v) => v / n)
    })
  // The pipeline differentiated is the piece the selection chose: hold its index k̄ while perturbing
  // (a meta-batch's episodes each have their own: there the perturbation must not move them).
  const held = solution.kbars === undefined ? select(at(solution.kbar))(solver) : solver
  const expected = yield* finiteDifferences(held, key, instance, point, x.length, directions, options.step ?? defaultStep)
  const projected = directions.map((d) => d.reduce((s, di, i) => s + di * gradient[i]!, 0))
  return {
    relError: relativeError(projected, expected),
    reference: "finite-difference" as const,
    compared: coordinates
      ? (learnsZ ? "coordinates of x and z" : "coordinates of x")
      : `${directions.length} random directions${learnsZ ? ", half in x and half in z" : ""}`,
    hypergradient: projected,
    expected,
    cost: solution.cost,
    ...approximationNote(solver)
  }
})

/** `bilevel gradcheck`: a preset method on a task, at the task's initial point. */
export const gradcheck = Effect.fnUntraced(function*(request: GradcheckRequest) {
  const { task } = yield* resolveTask(request.task, request.taskModule)
  const method = yield* resolveMethod(request.method)
  const settings = yield* resolveSettings(task, method, request.settings)
  yield* checkCombination(settings, request.settings)
  yield* checkMemory(task, method, settings, (yield* Backend).name)
  const result = yield* Effect.gen(function*() {
    const instance = yield* task.make(settings.task)
    return yield* checkSolver(method.build(settings.task, settings.method), instance, request)
  }).pipe(Effect.scoped, tensorScope, Effect.provide(Rng.layer(request.seed)))
  return { task: task.name, method: method.name, ...result } satisfies GradcheckResult
})
