/**
 * A worker process of a sweep: receives one planned run over the IPC channel, executes it (tfjs keeps
 * one global engine per process, so a process runs one run), reports its progress and outcome, and
 * exits. Its loader (bin/bilevel-worker.js) makes it die with its parent: when the channel closes
 * (the sweep or runner that started it was killed), it exits.
 */
// The package's barrel loads its cluster, HTTP and socket modules too: a second more per worker.
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Cause, Effect, Schema } from "effect"
import { execute, Outcome } from "./execute.ts"
import { PlannedRun } from "./plan.ts"

/** Parent → worker. */
export const Job = Schema.Struct({ run: PlannedRun })

/** Worker → parent: progress (at most every {@link progressEveryMs}, and the last step), then the outcome. */
export const Report = Schema.Union([
  Schema.Struct({ type: Schema.Literal("step"), t: Schema.Number, total: Schema.Number, F: Schema.Number }),
  Schema.Struct({ type: Schema.Literal("outcome"), outcome: Outcome }),
  Schema.Struct({ type: Schema.Literal("error"), message: Schema.String })
])
export type Report = typeof Report.Type

export const progressEveryMs = 250

const send = (report: Report) =>
  Effect.callback<void>((resume) => {
    process.send!(report, () => resume(Effect.void))
  })

const work = (message: unknown) =>
  Effect.gen(function*() {
    const { run } = yield* Schema.decodeUnknownEffect(Job)(message).pipe(Effect.orDie)
    let last = 0
    const outcome = yield* execute(run, (record, total) => {
      const now = performance.now()
      if (now - last < progressEveryMs && record.t + 1 < total) return Effect.void
      last = now
      return send({ type: "step", t: record.t + 1, total, F: record.F })
    })
    yield* send({ type: "outcome", outcome })
  }).pipe(
    Effect.catchCause((cause) => {
      const error = Cause.squash(cause)
      const message = typeof error === "object" && error !== null && "_tag" in error && "message" in error
        ? `${String(error._tag)}: ${String(error.message)}`
        : Cause.pretty(cause)
      return send({ type: "error", message })
    }),
    Effect.provide(NodeServices.layer)
  )

process.once("message", (message) => {
  NodeRuntime.runMain(Effect.andThen(work(message), Effect.sync(() => process.disconnect())))
})
