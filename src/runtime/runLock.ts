/**
 * One writer per run directory. `run` and `resume` hold `run.lock` while they write: a file created
 * exclusively (O_EXCL), holding the writer's pid, host and start time. A second writer fails at once
 * with `RunLocked` naming the holder, instead of interleaving its steps with the first one's. A lock
 * left by a process that died without releasing it (SIGKILL, power loss) is stale when its pid no
 * longer runs on this host, and is then taken over; a lock from another host is never guessed stale.
 */
import { Effect, FileSystem, Schema } from "effect"
import { hostname } from "node:os"
import { RunLocked } from "../domain/errors.ts"
import { fileFailure, files } from "./RunRecord.ts"

const Holder = Schema.Struct({ pid: Schema.Number, host: Schema.String, since: Schema.String })
type Holder = typeof Holder.Type

/** Whether process `pid` runs on this machine (signal 0 probes without signalling; EPERM: it runs, as another user). */
const running = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

const me = (): Holder => ({ pid: process.pid, host: hostname(), since: new Date().toISOString() })

/**
 * Holds the lock of run directory `dir` for the enclosing scope: released (removed) when the scope
 * closes, however it closes.
 */
export const hold = Effect.fnUntraced(function*(dir: string) {
  const fs = yield* FileSystem.FileSystem
  const path = `${dir}/${files.lock}`
  const holder = me()
  /** Creates the lock file exclusively: true when this process now holds it (released with the scope). */
  const take = Effect.acquireRelease(
    fs.writeFileString(path, JSON.stringify(holder) + "\n", { flag: "wx" }).pipe(
      Effect.as(true),
      Effect.catchIf((e) => e.reason._tag === "AlreadyExists", () => Effect.succeed(false)),
      Effect.mapError(fileFailure(path, "created"))
    ),
    (taken) => taken ? fs.remove(path, { force: true }).pipe(Effect.ignore) : Effect.void
  )
  const current = fs.readFileString(path).pipe(
    Effect.flatMap(Schema.decodeUnknownEffect(Schema.fromJsonString(Holder))),
    Effect.option
  )
  if (yield* take) return
  // Someone holds it or held it; a torn lock file (killed while writing it) is stale too.
  const other = yield* current
  if (other._tag === "Some" && (other.value.host !== holder.host || running(other.value.pid))) {
    return yield* new RunLocked({ dir, ...other.value })
  }
  // Stale: take it over. Removing, then creating exclusively again, means that of two processes
  // finding the same stale lock one wins and the other sees the winner's lock.
  yield* fs.remove(path, { force: true }).pipe(Effect.mapError(fileFailure(path, "removed")))
  if (yield* take) return
  const winner = yield* current
  return yield* new RunLocked({ dir, ...(winner._tag === "Some" ? winner.value : { pid: -1, host: "unknown", since: "unknown" }) })
})
