/**
 * `--backend auto`: the backend is chosen from the size of the problem — the number of elements of
 * the LL variable y_0 of the task instance the run will build (built once on `cpu` from the same
 * settings and seed, then released). Tiny problems get `cpu`, the rest `wasm`; the run record's
 * `backend` field holds the backend chosen, never `auto`.
 */
import { Effect, Layer } from "effect"
import { Rng } from "../domain/Rng.ts"
import { tensorScope } from "../domain/tensors.ts"
import * as Backend from "./Backend.ts"
import type { Method } from "../solvers/methods.ts"
import type { Task } from "../tasks/Task.ts"
import { resolveMethod, resolveSettings } from "./settings.ts"
import { resolveTask } from "./taskModule.ts"

export interface ProblemRequest {
  readonly task: string | Task
  readonly taskModule?: string | undefined
  readonly method: string | Method
  readonly seed: number
  readonly settings: Record<string, unknown>
}

/** Elements of y_0 in the instance `request` builds. */
export const lowerLevelSize = (request: ProblemRequest) =>
  Effect.gen(function*() {
    const { task } = yield* resolveTask(request.task, request.taskModule)
    const method = yield* resolveMethod(request.method)
    const settings = yield* resolveSettings(task, method, request.settings)
    const instance = yield* task.make(settings.task)
    return instance.y0.size
  }).pipe(Effect.scoped, tensorScope, Effect.provide(Rng.layer(request.seed)), Effect.provide(Backend.layer("cpu")))

/** The backend of `choice`; for `auto`, the one {@link Backend.resolveAuto} picks for `request`'s problem. */
export const backendLayer = (choice: Backend.BackendChoice, request: ProblemRequest) =>
  choice === "auto"
    ? Layer.unwrap(Effect.map(lowerLevelSize(request), (size) => Backend.layer(Backend.resolveAuto(size))))
    : Backend.layer(choice)
