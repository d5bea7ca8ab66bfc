/**
 * The memory a configuration needs, estimated before anything is allocated, so that a setting this
 * machine cannot hold (`--set dimY=100000`, `--set innerSteps=1000000000`) is refused at once with
 * the settings, the estimate and the remedy, instead of a V8 "heap out of memory" abort a minute in.
 *
 * Two budgets, because tensors and their bookkeeping live in different places:
 * - tensor data (the task's data, the stored LL iterates and their residuals) in typed arrays outside
 *   the JS heap, bounded by the machine's memory (or its cgroup's), and by wasm32's 4 GiB on wasm;
 * - the bookkeeping of every stored iterate (tensor objects, tape entries) on the JS heap, bounded by
 *   V8's heap limit. Measured: 8.3 KB per stored LL step with a one-element y (toy-nonconvex, RHG,
 *   K = 5 000 → 40 000 raised the peak RSS by 291 MB on cpu), about the same with 200 elements.
 *
 * It is an estimate (the order of magnitude is what matters): it refuses only what exceeds a budget.
 */
import { Effect } from "effect"
import { totalmem } from "node:os"
import { getHeapStatistics } from "node:v8"
import { InsufficientMemory } from "../domain/errors.ts"
import type { Retention } from "../dynamics/selection.ts"
import type { Method } from "../solvers/methods.ts"
import type { Task } from "../tasks/Task.ts"
import type { ResolvedSettings } from "./settings.ts"

/** JS-heap bytes per stored LL step (see the measurement above). */
export const heapBytesPerStoredStep = 8 * 1024

/** LL iterates a strategy keeps at once out of K + 1. */
export const storedIterates = (retention: Retention, innerSteps: number): number =>
  retention === true
    ? innerSteps + 1
    : retention === false
    ? 2
    : "checkpointEvery" in retention
    ? Math.ceil(innerSteps / retention.checkpointEvery) + retention.checkpointEvery + 1
    : retention.window + 1

export interface MemoryEstimate {
  /** Typed-array bytes: data, stored iterates and their residuals. */
  readonly tensorBytes: number
  /** JS-heap bytes of the stored iterates' bookkeeping. */
  readonly heapBytes: number
  readonly breakdown: string
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`

/** The estimate for `task` solved by `method` with `settings`. */
export const estimate = (task: Task, method: Method, settings: ResolvedSettings): MemoryEstimate | undefined => {
  if (task.size === undefined) return undefined
  const size = task.size(settings.task)
  const solver = method.build(settings.task, settings.method)
  const stored = storedIterates(solver.hypergradient.needsPrefix, settings.task.innerSteps)
  // An iterate, its gradient and the step's residuals; twice y for x, z and the optimizers' state.
  const trajectory = 4 * stored * (2 * size.y + size.residuals)
  const tensorBytes = size.dataBytes + trajectory + 4 * 8 * size.y
  return {
    tensorBytes,
    heapBytes: stored * heapBytesPerStoredStep,
    breakdown: `data ${mib(size.dataBytes)}, ${stored} stored LL iterates of ${size.y} elements ` +
      `with ${size.residuals} residuals each ${mib(trajectory)}, their bookkeeping ${mib(stored * heapBytesPerStoredStep)}`
  }
}

/** What this process may use: the machine's (or cgroup's) memory for tensors, V8's heap limit for the rest. */
export const budget = (backend: string) => {
  const constrained = (process as { constrainedMemory?: () => number | undefined }).constrainedMemory?.()
  const machine = constrained !== undefined && constrained > 0 ? Math.min(constrained, totalmem()) : totalmem()
  return {
    tensorBytes: backend === "wasm" ? Math.min(machine, 4 * 2 ** 30) : machine,
    heapBytes: getHeapStatistics().heap_size_limit
  }
}

/** Fails with `InsufficientMemory` when the estimate exceeds either budget of this process on `backend`. */
export const checkMemory = (task: Task, method: Method, settings: ResolvedSettings, backend: string) =>
  Effect.suspend(() => {
    const needed = estimate(task, method, settings)
    if (needed === undefined) return Effect.void
    const available = budget(backend)
    const over = needed.tensorBytes > available.tensorBytes
      ? { neededBytes: needed.tensorBytes, availableBytes: available.tensorBytes }
      : needed.heapBytes > available.heapBytes
      ? { neededBytes: needed.heapBytes, availableBytes: available.heapBytes }
      : undefined
    if (over === undefined) return Effect.void
    const named = Object.entries({ ...settings.task, ...settings.method })
      .filter(([key]) => key === "innerSteps" || !["outerSteps", "innerLr", "outerLr"].includes(key))
      .filter(([, value]) => typeof value === "number")
      .map(([key, value]) => `${key}=${value}`)
    return Effect.fail(
      new InsufficientMemory({
        settings: `${task.name} · ${method.name} (${named.join(", ")})`,
        ...over,
        breakdown: needed.breakdown,
        hint: "Lower the sizes (dimensions, examples, hidden width) or innerSteps; a reverse-mode method keeps every LL " +
          "iterate: a truncated one (t-rhg, lastM) or reverse checkpoints keep fewer, an implicit one (ls, ns, aid-fp) none."
      })
    )
  })
