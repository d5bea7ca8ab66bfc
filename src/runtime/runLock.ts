/**
 * One writer per run directory. `run` and `resume` hold `run.lock` while they write: a file published
 * whole (hard-linked into place), holding the writer's pid, host, start time and heartbeat. A second writer fails
 * with `RunLocked` naming the holder, instead of interleaving its steps with the first one's.
 *
 * A lock left by a process that died without releasing it (SIGKILL, a lost machine) is stale, and is
 * taken over: on this host when its pid no longer runs; from another host (a shared disk, a cluster
 * runner that died) when its heartbeat — rewritten every {@link beatEveryMs} while the lock is held —
 * is older than {@link staleAfterMs}. Hosts sharing a disk must agree on the time to within that.
 */
import { Duration, Effect, FileSystem, Option, Schedule, Schema } from "effect"
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
  /** A private name beside the lock, for a file on its way in or out (host, pid and a count: no two writers share one). */
  const privateName = () => `${path}.${holder.host}-${holder.pid}-${privateNames++}.tmp`
  /**
   * Creates the lock file: true when this process now holds it (released with the scope). Written
   * whole under a private name, then hard-linked into place, which fails when the lock exists: a
   * reader never finds it half-written (an empty lock, read between an exclusive open and its write,
   * would look torn, hence stale, and be taken over from a live holder).
   */
  const take = Effect.acquireRelease(
    Effect.gen(function*() {
      const draft = privateName()
      yield* fs.writeFileString(draft, JSON.stringify(holder) + "\n", { flag: "wx" })
      return yield* fs.link(draft, path).pipe(Effect.as(true), Effect.ensuring(fs.remove(draft, { force: true }).pipe(Effect.ignore)))
    }).pipe(
      Effect.catchIf((e) => e.reason._tag === "AlreadyExists", () => Effect.succeed(false)),
      Effect.mapError(fileFailure(path, "created"))
    ),
    (taken) => taken ? fs.remove(path, { force: true }).pipe(Effect.ignore) : Effect.void
  )
  /** The lock file's text; none when there is no lock file. */
  const text = fs.readFileString(path).pipe(
    Effect.map(Option.some),
    Effect.catchIf((e) => e.reason._tag === "NotFound", () => Effect.succeedNone),
    Effect.mapError(fileFailure(path, "read"))
  )
  const current = fs.readFileString(path).pipe(Effect.option, Effect.map(Option.flatMap(decodeHolder)))
  /**
   * Removes a stale lock if it is still the one read (`seen`): moved aside first, atomically, so that
   * of two processes taking over one stale lock, the slower puts back the faster's fresh lock rather
   * than deleting it.
   */
  const removeIfUnchanged = Effect.fnUntraced(function*(seen: string) {
    const aside = privateName()
    const moved = yield* fs.rename(path, aside).pipe(
      Effect.as(true),
      Effect.catchIf((e) => e.reason._tag === "NotFound", () => Effect.succeed(false)),
      Effect.mapError(fileFailure(path, "moved aside"))
    )
    if (!moved) return
    const still = yield* fs.readFileString(aside).pipe(Effect.option)
    if (Option.isSome(still) && still.value !== seen) {
      yield* fs.link(aside, path).pipe(Effect.catchIf((e) => e.reason._tag === "AlreadyExists", () => Effect.void), Effect.ignore)
    }
    yield* fs.remove(aside, { force: true }).pipe(Effect.mapError(fileFailure(aside, "removed")))
  })
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
  const deadline = Date.now() + staleAfter + beatEvery
  for (;;) {
    if (yield* take) return yield* Effect.asVoid(beating)
    const seen = yield* text
    // Released between the two: try again.
    if (Option.isNone(seen)) continue
    // A torn lock file (one written by a process killed while writing it) is stale too.
    const other = decodeHolder(seen.value)
    if (Option.isSome(other) && !stale(other.value, holder.host, staleAfter)) {
      // Only another host's lock can lapse while waiting: one here lives as long as its process.
      if (!options.waitForStale || other.value.host === holder.host || Date.now() > deadline) {
        return yield* new RunLocked({ dir, ...describe(other.value) })
      }
      yield* Effect.sleep(Duration.millis(beatEvery))
      continue
    }
    yield* removeIfUnchanged(seen.value)
  }
})

const Holder = Schema.Struct({
  pid: Schema.Number,
  host: Schema.String,
  since: Schema.String,
  /** The last heartbeat; absent until the first one (and in locks written before heartbeats). */
  beat: Schema.optional(Schema.String)
})
type Holder = typeof Holder.Type

const decodeHolder = Schema.decodeUnknownOption(Schema.fromJsonString(Holder))

let privateNames = 0

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
