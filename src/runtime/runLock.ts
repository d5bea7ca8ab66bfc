/**
 * One writer per run directory. `run` and `resume` hold `run.lock` while they write: a file created
 * exclusively (O_EXCL), holding the writer's pid, host, start time and heartbeat. A second writer fails
 * with `RunLocked` naming the holder, instead of interleaving its steps with the first one's.
 *
 * A lock left by a process that died without releasing it (SIGKILL, a lost machine) is stale, and is
 * taken over: on this host when its pid no longer runs; from another host (a shared disk, a cluster
 * runner that died) when its heartbeat — rewritten every {@link beatEveryMs} while the lock is held —
 * is older than {@link staleAfterMs}. Hosts sharing a disk must agree on the time to within that.
 */
import { Duration, Effect, FileSystem, Schedule, Schema } from "effect"
import { hostname } from "node:os"
import { RunLocked } from "../domain/errors.ts"
import { fileFailure, files, writeAtomically } from "./RunRecord.ts"

/** How often a holder rewrites its heartbeat. */
export const beatEveryMs = 10_000
/** A lock from another host whose heartbeat is older than this is taken as abandoned. */
export const staleAfterMs = 60_000

export interface HoldOptions {
  /**
   * When another host's lock has a fresh heartbeat, wait until it is stale (or refuse once it has
   * beaten on for {@link staleAfterMs}) instead of refusing at once: what a cluster runner taking over a
   * dead runner's run needs. Default false: a person gets the refusal at once.
   */
  readonly waitForStale?: boolean | undefined
  readonly beatEveryMs?: number | undefined
  readonly staleAfterMs?: number | undefined
}

/**
 * Holds the lock of run directory `dir` for the enclosing scope, beating its heartbeat meanwhile:
 * released (removed) when the scope closes, however it closes.
 */
export const hold = Effect.fnUntraced(function*(dir: string, options: HoldOptions = {}) {
  const fs = yield* FileSystem.FileSystem
  const path = `${dir}/${files.lock}`
  const beatEvery = options.beatEveryMs ?? beatEveryMs
  const staleAfter = options.staleAfterMs ?? staleAfterMs
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
  /** Rewrites the heartbeat while the lock is still this process's (a takeover after a long stall ends it). */
  const beat = Effect.gen(function*() {
    const now = yield* current
    if (now._tag === "None" || now.value.pid !== holder.pid || now.value.host !== holder.host || now.value.since !== holder.since) {
      return yield* Effect.logWarning(`${path} is no longer held by this process: its heartbeat stops`).pipe(Effect.andThen(Effect.interrupt))
    }
    yield* writeAtomically(path, JSON.stringify({ ...holder, beat: new Date().toISOString() }) + "\n")
  })
  // A beat is not cut short when the scope closes: it would leave run.lock.tmp behind.
  const beating = Effect.repeat(Effect.sleep(Duration.millis(beatEvery)).pipe(Effect.andThen(Effect.uninterruptible(beat))), Schedule.forever).pipe(
    Effect.ignore,
    Effect.forkScoped
  )
  if (yield* take) return yield* Effect.asVoid(beating)
  const deadline = Date.now() + staleAfter + beatEvery
  for (;;) {
    // Someone holds it or held it; a torn lock file (killed while writing it) is stale too.
    const other = yield* current
    if (other._tag === "None" || stale(other.value, holder.host, staleAfter)) break
    // Only another host's lock can lapse while waiting: one here lives as long as its process.
    if (!options.waitForStale || other.value.host === holder.host || Date.now() > deadline) return yield* new RunLocked({ dir, ...describe(other.value) })
    yield* Effect.sleep(Duration.millis(beatEvery))
  }
  // Stale: take it over. Removing, then creating exclusively again, means that of two processes
  // finding the same stale lock one wins and the other sees the winner's lock.
  yield* fs.remove(path, { force: true }).pipe(Effect.mapError(fileFailure(path, "removed")))
  if (yield* take) return yield* Effect.asVoid(beating)
  const winner = yield* current
  return yield* new RunLocked({ dir, ...(winner._tag === "Some" ? describe(winner.value) : { pid: -1, host: "unknown", since: "unknown" }) })
})

const Holder = Schema.Struct({
  pid: Schema.Number,
  host: Schema.String,
  since: Schema.String,
  /** The last heartbeat; absent until the first one (and in locks written before heartbeats). */
  beat: Schema.optional(Schema.String)
})
type Holder = typeof Holder.Type

const me = (): Holder => ({ pid: process.pid, host: hostname(), since: new Date().toISOString() })

/** On this host: its pid no longer runs. From another host: no heartbeat for `staleAfter`. */
const stale = (other: Holder, host: string, staleAfter: number): boolean =>
  other.host === host ? !running(other.pid) : Date.now() - Date.parse(other.beat ?? other.since) > staleAfter

/** Whether process `pid` runs on this machine (signal 0 probes without signalling; EPERM: it runs, as another user). */
const running = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

const describe = (holder: Holder) => ({ pid: holder.pid, host: holder.host, since: holder.since, beat: holder.beat ?? holder.since })
