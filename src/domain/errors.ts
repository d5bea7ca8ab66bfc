/**
 * Every failure a user can cause, as a tagged error whose message says what is wrong and what to do.
 */
import { type PlatformError, Schema } from "effect"

/**
 * What the system said about a failed file operation, errno code first (`ENOSPC: no space left on
 * device, write`): Effect's platform error names only its own category (`Unknown:
 * FileSystem.writeFile`), and the code is what a user acts on and searches for.
 */
export const systemProblem = (error: PlatformError.PlatformError): string => {
  const cause = error.reason.cause as NodeJS.ErrnoException | undefined
  return typeof cause?.code === "string" ? cause.message : error.message
}

/** A run configuration (flags, `--set`, `--config` file) failed to decode. */
export class InvalidConfig extends Schema.TaggedError<InvalidConfig>()("InvalidConfig", {
  message: Schema.String
}) {}

/** A name (task, method, backend, experiment) is not one of the known ones. */
export class UnknownName extends Schema.TaggedError<UnknownName>()("UnknownName", {
  kind: Schema.String,
  name: Schema.String,
  allowed: Schema.Array(Schema.String)
}) {
  override get message() {
    return `Unknown ${this.kind} "${this.name}". Allowed: ${this.allowed.join(", ")}.`
  }
}

/** A tensor backend could not be initialized; `hint` says how to get it. */
export class BackendUnavailable extends Schema.TaggedError<BackendUnavailable>()("BackendUnavailable", {
  backend: Schema.String,
  reason: Schema.String,
  hint: Schema.String
}) {
  override get message() {
    return `Backend "${this.backend}" is unavailable: ${this.reason}. ${this.hint}`
  }
}

/** A NaN or Inf appeared: `quantity` at outer step `step`, with the last finite values seen. */
export class Diverged extends Schema.TaggedError<Diverged>()("Diverged", {
  step: Schema.Number,
  quantity: Schema.String,
  lastFinite: Schema.Record(Schema.String, Schema.Unknown)
}) {
  override get message() {
    return `Run diverged at outer step ${this.step}: ${this.quantity} is not finite. ` +
      `Last finite values: ${JSON.stringify(this.lastFinite)}. ` +
      `Lower the step sizes (innerLr, outerLr) or the number of inner steps.`
  }
}

/** A dataset file is missing, unreadable or malformed. */
export class DatasetError extends Schema.TaggedError<DatasetError>()("DatasetError", {
  file: Schema.String,
  problem: Schema.String,
  hint: Schema.String
}) {
  override get message() {
    return `Dataset file ${this.file}: ${this.problem}. ${this.hint}`
  }
}

/** Reading or writing a run directory failed. */
export class RunRecordError extends Schema.TaggedError<RunRecordError>()("RunRecordError", {
  path: Schema.String,
  problem: Schema.String
}) {
  override get message() {
    return `Run record ${this.path}: ${this.problem}`
  }
}

/** An operation whose higher-order gradient is known to be wrong was used inside a differentiated objective. */
export class UnsupportedOp extends Schema.TaggedError<UnsupportedOp>()("UnsupportedOp", {
  op: Schema.String,
  use: Schema.String
}) {
  override get message() {
    return `The op "${this.op}" has no trustworthy second-order gradient on tfjs; use ${this.use} instead.`
  }
}

/** A replayed run's steps differ from the recorded ones: the first difference, field by field. */
export class ReplayMismatch extends Schema.TaggedError<ReplayMismatch>()("ReplayMismatch", {
  dir: Schema.String,
  step: Schema.Number,
  field: Schema.String,
  recorded: Schema.Unknown,
  replayed: Schema.Unknown
}) {
  override get message() {
    return `Replay of ${this.dir} differs from the record at outer step ${this.step}, field "${this.field}": ` +
      `recorded ${JSON.stringify(this.recorded) ?? "nothing"}, replayed ${JSON.stringify(this.replayed) ?? "nothing"}. ` +
      `The run is not reproducible on this backend and version (see \`bilevel replay --help\`).`
  }
}

/** A solver composed of parts that do not fit together (found where the types could not see it). */
export class InvalidSolver extends Schema.TaggedError<InvalidSolver>()("InvalidSolver", {
  solver: Schema.String,
  problem: Schema.String,
  hint: Schema.String
}) {
  override get message() {
    return `Solver ${this.solver}: ${this.problem}. ${this.hint}`
  }
}

/** A hypergradient strategy could not produce a trustworthy result (a linear solve broke down, say). */
export class HypergradientFailed extends Schema.TaggedError<HypergradientFailed>()("HypergradientFailed", {
  strategy: Schema.String,
  problem: Schema.String,
  hint: Schema.String
}) {
  override get message() {
    return `Hypergradient ${this.strategy}: ${this.problem}. ${this.hint}`
  }
}

/** The PostgreSQL database of a distributed sweep cannot be used. */
export class ClusterUnavailable extends Schema.TaggedError<ClusterUnavailable>()("ClusterUnavailable", {
  database: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `The cluster database ${this.database} cannot be used: ${this.reason}. Check the --cluster URL and that ` +
      `PostgreSQL is running and reachable from here (docs/scale-out.md says how to start it).`
  }
}

/** A user's task module cannot be loaded, or does not export the task asked for; `hint` says what to do. */
export class TaskModuleError extends Schema.TaggedError<TaskModuleError>()("TaskModuleError", {
  path: Schema.String,
  problem: Schema.String,
  hint: Schema.String
}) {
  override get message() {
    return `Task module ${this.path}: ${this.problem}. ${this.hint}`
  }
}

/** Another process is writing the run directory: only one writer at a time may append to a record. */
export class RunLocked extends Schema.TaggedError<RunLocked>()("RunLocked", {
  dir: Schema.String,
  pid: Schema.Number,
  host: Schema.String,
  since: Schema.String,
  /** The holder's last heartbeat (its start when it has not beaten yet). */
  beat: Schema.optional(Schema.String)
}) {
  override get message() {
    return `Run directory ${this.dir} is being written by process ${this.pid} on ${this.host} (since ${this.since}` +
      `${this.beat === undefined ? "" : `, last heartbeat ${this.beat}`}). Wait for it to end: a lock from another host ` +
      `is taken over once its heartbeat has stopped for a minute; if that process is gone, removing ${this.dir}/run.lock frees it now.`
  }
}

/** A configuration needs more memory than this machine can give the process. */
export class InsufficientMemory extends Schema.TaggedError<InsufficientMemory>()("InsufficientMemory", {
  settings: Schema.String,
  neededBytes: Schema.Number,
  availableBytes: Schema.Number,
  breakdown: Schema.String,
  hint: Schema.String
}) {
  override get message() {
    const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(bytes < 2 ** 30 ? 3 : 1)} GiB`
    return `The settings ${this.settings} need about ${gib(this.neededBytes)} (${this.breakdown}), ` +
      `more than the ${gib(this.availableBytes)} this process can use. ${this.hint}`
  }
}

/** `bilevel gradcheck --tolerance`: the hypergradient is further from the reference than allowed. */
export class GradcheckFailed extends Schema.TaggedError<GradcheckFailed>()("GradcheckFailed", {
  task: Schema.String,
  method: Schema.String,
  relError: Schema.Number,
  tolerance: Schema.Number,
  reference: Schema.String
}) {
  override get message() {
    return `${this.method} on ${this.task}: relative error ${this.relError.toExponential(3)} against the ${this.reference} ` +
      `exceeds --tolerance ${this.tolerance}.`
  }
}
