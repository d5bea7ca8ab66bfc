/**
 * `bilevel runner`: one runner of a distributed sweep (Effect Cluster, state in PostgreSQL). It executes
 * the runs whose shards it owns, each in a worker process, until it is stopped; `bilevel sweep
 * --cluster` submits the runs. See docs/scale-out.md.
 */
import { Console, Effect, Layer, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { hostname } from "node:os"
import { checkDatabase, runnerLayer } from "../sweep/cluster.ts"
import { defaultWorkers, type Progress } from "../sweep/pool.ts"

export const databaseFlag = Flag.String("cluster").pipe(
  Flag.withMetavar("postgres-url"),
  Flag.withDescription("PostgreSQL database holding the cluster's runners and messages, e.g. postgres://bilevel@db:5432/bilevel")
)

/** One line per run started and ended, on stderr: a runner is a service, its output a log. */
const runLog: Progress = {
  started: (run) => console.error(`${new Date().toISOString()} start ${run.id} ${run.label} seed ${run.seed} → ${run.dir}`),
  step: () => {},
  ended: (run, outcome) =>
    console.error(
      `${new Date().toISOString()} end   ${run.id} ${outcome.action} ${outcome.status}` +
        (outcome.resumedFrom === undefined ? "" : ` (resumed from outer step ${outcome.resumedFrom})`) +
        (outcome.error === undefined ? "" : `: ${outcome.error}`)
    )
}

export const runnerCommand = Command.make("runner", {
  database: databaseFlag,
  host: Flag.String("host").pipe(
    Flag.withDescription("the name or address other runners and submitters reach this runner at (default: this host's name)"),
    Flag.optional
  ),
  port: Flag.Int("port").pipe(Flag.withDescription("port of the runner's socket"), Flag.withDefault(34431)),
  listenHost: Flag.String("listen-host").pipe(Flag.withDescription("address to listen on, when not --host (e.g. 0.0.0.0)"), Flag.optional),
  workers: Flag.Int("workers").pipe(
    Flag.withDescription("runs executed at once, each in a worker process (default: the cores)"),
    Flag.filter((n) => n >= 1, (n) => `--workers must be at least 1, got ${n}`),
    Flag.optional
  ),
  lockExpiration: Flag.Finite("lock-expiration").pipe(
    Flag.withDescription("seconds after which a silent runner's shards (and its runs) move to the others; locks are refreshed at a third of it"),
    Flag.filter((s) => s >= 1, (s) => `--lock-expiration must be at least 1 second, got ${s}`),
    Flag.withDefault(35)
  )
}, (flags) =>
  Effect.gen(function*() {
    const host = Option.getOrElse(flags.host, hostname)
    const workers = Option.getOrElse(flags.workers, defaultWorkers)
    yield* checkDatabase(flags.database)
    yield* Console.error(`runner ${host}:${flags.port}, ${workers} worker${workers > 1 ? "s" : ""}; stop it with Ctrl-C or SIGTERM`)
    yield* Layer.launch(runnerLayer({
      database: flags.database,
      host,
      port: flags.port,
      listenHost: Option.getOrUndefined(flags.listenHost),
      workers,
      progress: runLog,
      failover: { refresh: `${(flags.lockExpiration / 3) * 1000} millis`, expiration: `${flags.lockExpiration * 1000} millis` }
    }))
  })).pipe(
    Command.withDescription(
      "Serve a distributed sweep as one Effect Cluster runner (runners and messages in PostgreSQL): execute the runs of " +
        "the shards this runner owns, each in a worker process, writing their records into the shared sweep directory"
    ),
    Command.withExamples([
      { command: "bilevel runner --cluster postgres://bilevel@db:5432/bilevel --host node1 --workers 8", description: "a runner on node1" }
    ])
  )
