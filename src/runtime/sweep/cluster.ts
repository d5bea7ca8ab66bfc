/**
 * A sweep on Effect Cluster. Each run is a `SweepRun` entity (its id the run's id) with one persisted
 * message, `Execute`: the submitter stores one per run in PostgreSQL, and the runner that owns the
 * entity's shard executes it in a worker process of its own pool, exactly as the embedded sweep
 * does, writing the record into the run's directory (a directory every runner and the submitter
 * share). The message's primary key is the run id, so submitting a sweep again adds no message for a
 * run already asked for: it waits for, or returns, the reply stored for it.
 *
 * When a runner dies, its shard locks expire (`shardLockExpiration`), another runner takes its shards
 * and reads their unprocessed messages back from PostgreSQL, and `execute` finds the interrupted
 * record and resumes it from its last checkpoint. The dead runner's workers die with it (they watch
 * their IPC channel), so no two processes write one record.
 */
import { NodeClusterSocket } from "@effect/platform-node"
import { PgClient } from "@effect/sql-pg"
import { Duration, Effect, Layer, Option, Redacted, Semaphore } from "effect"
import { ClusterSchema, Entity, RunnerAddress } from "effect/cluster"
import { Rpc } from "effect/rpc"
import { SqlClient } from "effect/sql"
import { ClusterUnavailable } from "../../domain/errors.ts"
import { Outcome } from "./execute.ts"
import { PlannedRun } from "./plan.ts"
import { inWorker, type Progress } from "./pool.ts"

export const Execute = Rpc.make("Execute", {
  payload: { run: PlannedRun },
  success: Outcome,
  // The run directory: the same run swept into another directory is another message.
  primaryKey: ({ run }) => run.dir
})
  // Stored in PostgreSQL, so the message outlives the submitter and the runner that took it.
  .annotate(ClusterSchema.Persisted, true)
  // A runner shutting down stops its runs rather than wait for them: the runner that takes the shard
  // resumes them from their checkpoints.
  .annotate(ClusterSchema.InterruptOnTermination, true)

export const SweepRun = Entity.make("SweepRun", [Execute])

/** How fast a dead runner's shards move: locks are refreshed every `refresh` and lapse after `expiration`. */
export interface Failover {
  readonly refresh: Duration.Input
  readonly expiration: Duration.Input
}

/** Cluster defaults (10 s / 35 s) suit runs of minutes; tests use seconds. */
export const defaultFailover: Failover = { refresh: "10 seconds", expiration: "35 seconds" }

export interface ClusterOptions {
  /** PostgreSQL URL, e.g. postgres://bilevel@db-host:5432/bilevel. */
  readonly database: string
  readonly failover?: Failover | undefined
}

const database = (url: string) => PgClient.layer({ url: Redacted.make(url), connectTimeout: "10 seconds" })

/** The URL with its password, if any, masked: what error messages and logs show. */
const masked = (url: string) => url.replace(/\/\/([^:/@]+):[^@]*@/, "//$1:***@")

/**
 * Fails with `ClusterUnavailable` unless the database answers a query. (The cluster's own layers treat
 * storage that cannot start as a defect; this says what is wrong first.)
 */
export const checkDatabase = (url: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`SELECT 1`
  }).pipe(
    Effect.provide(database(url)),
    Effect.mapError((e) => new ClusterUnavailable({ database: masked(url), reason: e.message }))
  )

const shardingConfig = (options: ClusterOptions) => {
  const failover = options.failover ?? defaultFailover
  return { shardLockRefreshInterval: failover.refresh, shardLockExpiration: failover.expiration }
}

export interface RunnerOptions extends ClusterOptions {
  /** The address other runners and submitters reach this runner at. */
  readonly host: string
  readonly port: number
  /** Address to listen on (default: `host`, `port`); e.g. 0.0.0.0 behind NAT. */
  readonly listenHost?: string | undefined
  /** Worker processes: runs executed at once on this runner. */
  readonly workers: number
  readonly progress?: Progress | undefined
}

/** A runner: hosts `SweepRun` entities, executing at most `workers` runs at once, until interrupted. */
export const runnerLayer = (options: RunnerOptions) =>
  Layer.unwrap(Effect.gen(function*() {
    const slots = yield* Semaphore.make(options.workers)
    return SweepRun.toLayer({
      Execute: ({ payload }) => slots.withPermit(inWorker(payload.run, { workers: options.workers, progress: options.progress }))
    }, { concurrency: 1 })
  })).pipe(
    Layer.provide(NodeClusterSocket.layer({
      storage: "sql",
      shardingConfig: {
        ...shardingConfig(options),
        runnerAddress: Option.some(RunnerAddress.make(options.host, options.port)),
        runnerListenAddress: Option.some(RunnerAddress.make(options.listenHost ?? options.host, options.port))
      }
    })),
    Layer.provide(database(options.database))
  )

/** A client of the cluster: sends messages, hosts nothing. */
export const clientLayer = (options: ClusterOptions) =>
  NodeClusterSocket.layer({
    storage: "sql",
    clientOnly: true,
    // The cluster reads unset fields from the environment, where HOST and PORT mean something else.
    shardingConfig: { ...shardingConfig(options), runnerAddress: Option.none(), runnerListenAddress: Option.none() }
  }).pipe(
    Layer.provide(database(options.database))
  )

/**
 * Submits every run to the cluster and waits for their outcomes (in the runs' order). Runs already
 * recorded in the shared directory should be left out by the caller: a run's message is stored once,
 * and its reply is kept.
 */
export const submit = (runs: ReadonlyArray<PlannedRun>, onOutcome?: (run: PlannedRun, outcome: Outcome) => void) =>
  Effect.gen(function*() {
    const client = yield* SweepRun.client
    return yield* Effect.forEach(runs, (run) =>
      client(run.id).Execute({ run }).pipe(
        Effect.tap((outcome) => Effect.sync(() => onOutcome?.(run, outcome)))
      ), { concurrency: "unbounded" })
  })
