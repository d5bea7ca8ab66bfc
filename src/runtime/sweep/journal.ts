/**
 * A sweep's journal, `sweep.ndjson` in its output directory: one line each time a process starts a run
 * (`start`) and finishes it (`end`, with its outcome), naming the host and process. Lines are short
 * single appends, which POSIX keeps whole when several processes append at once; a kill can leave a
 * `start` without its `end`, which is exactly what it records. Who did what, and that no run was
 * done twice, is read off it (`bilevel sweep` prints it; the cluster test checks it).
 */
import { Effect, FileSystem, Schema } from "effect"
import { hostname } from "node:os"
import { RunRecordError } from "../../domain/errors.ts"

export const Entry = Schema.Struct({
  id: Schema.String,
  event: Schema.Literals(["start", "end"]),
  action: Schema.Literals(["ran", "resumed"]),
  status: Schema.optional(Schema.Literals(["completed", "failed"])),
  resumedFrom: Schema.optional(Schema.Number),
  host: Schema.String,
  pid: Schema.Number,
  at: Schema.String
})
export type Entry = typeof Entry.Type

/** Appends one line for this process. */
export const append = Effect.fnUntraced(function*(path: string, entry: Omit<Entry, "host" | "pid" | "at">) {
  const fs = yield* FileSystem.FileSystem
  const line = JSON.stringify({ ...entry, host: hostname(), pid: process.pid, at: new Date().toISOString() }) + "\n"
  yield* fs.writeFileString(path, line, { flag: "a" }).pipe(
    Effect.mapError((e) => new RunRecordError({ path, problem: `cannot be appended to: ${e.message}` }))
  )
})

/** Every whole line of the journal at `path` (none when it does not exist yet). */
export const read = Effect.fnUntraced(function*(path: string) {
  const fs = yield* FileSystem.FileSystem
  const exists = yield* fs.exists(path).pipe(Effect.orElseSucceed(() => false))
  if (!exists) return [] as ReadonlyArray<Entry>
  const text = yield* fs.readFileString(path).pipe(Effect.mapError(() => new RunRecordError({ path, problem: "cannot be read" })))
  return yield* Effect.forEach(text.split("\n").filter((line) => line.trim() !== ""), (line, i) =>
    Effect.try({ try: () => JSON.parse(line) as unknown, catch: () => new RunRecordError({ path: `${path} line ${i + 1}`, problem: "is not JSON" }) }).pipe(
      Effect.flatMap(Schema.decodeUnknownEffect(Entry)),
      Effect.mapError((e) => e instanceof RunRecordError ? e : new RunRecordError({ path: `${path} line ${i + 1}`, problem: `is not a journal entry: ${e.message}` }))
    ))
})
