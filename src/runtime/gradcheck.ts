/**
 * `bilevel gradcheck`: a method's hypergradient at a task's initial point against ground truth —
 * the task's closed form where it has one, otherwise central finite differences of the very
 * pipeline the method differentiates, F(x, y_k̄(x, z)), in the coordinates of x (and z under
 * auxiliary-init), or along random directions when there are too many coordinates.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import type { Cost } from "../domain/Cost.ts"
import { Rng } from "../domain/Rng.ts"
import { tensorScope, vectorValue } from "../domain/tensors.ts"
import { type Solver, solve, upperAt } from "../solvers/Solver.ts"
import type { TaskInstance } from "../tasks/Task.ts"
import { findMethod, findTask, resolveSettings } from "./settings.ts"

export interface GradcheckRequest {
  readonly task: string
  readonly method: string
  readonly seed: number
  readonly settings: Record<string, unknown>
  /** Finite-difference step, relative to max(1, ‖point‖∞); float32 wants about 1e-2 … 1e-3. */
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
}

const relativeError = (a: ReadonlyArray<number>, b: ReadonlyArray<number>) =>
  Math.hypot(...a.map((ai, i) => ai - b[i]!)) / Math.max(Math.hypot(...b), 1e-12)

/** Central differences of the pipeline along each of `directions` in the joint (x, z) space. */
const finiteDifferences = (
  solver: Solver,
  instance: TaskInstance,
  point: ReadonlyArray<number>,
  dimX: number,
  directions: ReadonlyArray<ReadonlyArray<number>>,
  step: number
) =>
  Effect.forEach(directions, (d) => {
    const h = step * Math.max(1, ...point.map(Math.abs))
    const at = (sign: number) =>
      tensorScope(Effect.suspend(() => {
        const shifted = point.map((p, i) => p + sign * h * d[i]!)
        return upperAt(solver, instance.problem, tf.tensor1d(shifted.slice(0, dimX)), tf.tensor1d(shifted.slice(dimX)))
      }))
    return Effect.map(Effect.all([at(1), at(-1)]), ([plus, minus]) => (plus - minus) / (2 * h))
  })

export const gradcheck = Effect.fnUntraced(function*(request: GradcheckRequest) {
  const task = yield* findTask(request.task)
  const method = yield* findMethod(request.method)
  const settings = yield* resolveSettings(task, method, request.settings)
  return yield* Effect.gen(function*() {
    const rng = yield* Rng
    const instance = yield* task.make(settings.task)
    const solver = method.build(settings.task, settings.method)
    const solution = yield* solve(solver, instance.problem, instance.x0, instance.y0)
    const x = vectorValue(instance.x0)
    const gradX = vectorValue(solution.gradX)
    const base = { task: task.name, method: method.name, cost: solution.cost }
    if (instance.exactHypergradient) {
      const expected = instance.exactHypergradient(x)
      return { ...base, relError: relativeError(gradX, expected), reference: "closed-form", compared: "x", hypergradient: gradX, expected } satisfies GradcheckResult
    }
    const learnsZ = solver.initialization === "auxiliary"
    const point = learnsZ ? [...x, ...vectorValue(instance.y0)] : x
    const gradient = learnsZ ? [...gradX, ...vectorValue(solution.gradZ)] : gradX
    const coordinates = point.length <= (request.directions ?? 16) * 4
    const directions = coordinates
      ? point.map((_, i) => point.map((__, j) => (i === j ? 1 : 0)))
      : Array.from({ length: request.directions ?? 16 }, () => {
        const d = Array.from(point, () => rng.normal())
        const n = Math.hypot(...d)
        return d.map((v) => v / n)
      })
    const expected = yield* finiteDifferences(solver, instance, point, x.length, directions, request.step ?? 1e-2)
    const projected = directions.map((d) => d.reduce((s, di, i) => s + di * gradient[i]!, 0))
    return {
      ...base,
      relError: relativeError(projected, expected),
      reference: "finite-difference",
      compared: coordinates ? (learnsZ ? "coordinates of x and z" : "coordinates of x") : `${directions.length} random directions`,
      hypergradient: projected,
      expected
    } satisfies GradcheckResult
  }).pipe(Effect.scoped, tensorScope, Effect.provide(Rng.layer(request.seed)))
})
