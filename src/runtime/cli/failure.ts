/**
 * How the command line ends on a failure. A user's mistake prints its message (which says what to
 * do) on stderr and exits 1, with no stack trace; a defect (a bug) gets one line too. With `--json`
 * the same failure is also one JSON object on stdout, `{"error": {"_tag", "message", …fields}}`,
 * and a command-line parse error prints that object instead of the help text.
 */
import { Console, Effect, Layer } from "effect"
import { CliOutput } from "effect/cli"

/** Whether the invocation asked for JSON output (read off argv: a parse error may come before the flags are decoded). */
export const wantsJson = (argv: ReadonlyArray<string>) => argv.includes("--json")

const isObject = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null

/** The fields of a typed error that are plain JSON data (paths, numbers, names), without causes and stacks. */
const plainFields = (error: Record<string, unknown>): Record<string, unknown> =>
  Object.fromEntries(
    Object.entries(error).filter(([key, value]) => {
      if (key === "cause" || key === "stack" || typeof value === "function") return false
      try {
        return JSON.stringify(value) !== undefined
      } catch {
        return false
      }
    })
  )

/** A failure's tag and message; a parse error's are those of the first thing wrong with the command line. */
const describe = (error: unknown): { readonly _tag: string; readonly message: string; readonly fields: Record<string, unknown> } => {
  if (isObject(error) && error["_tag"] === "ShowHelp") {
    const errors = Array.isArray(error["errors"]) ? (error["errors"] as Array<unknown>) : []
    const first = errors[0]
    return first === undefined
      ? { _tag: "ShowHelp", message: "No command given: see `bilevel --help`.", fields: {} }
      : { ...describe(first), fields: { errors: errors.map((e) => describe(e).message) } }
  }
  const message = isObject(error) && "message" in error ? String(error["message"]) : String(error)
  const tag = isObject(error) && "_tag" in error ? String(error["_tag"]) : "Error"
  return { _tag: tag, message, fields: isObject(error) ? plainFields(error) : {} }
}

const exitOne = Effect.sync(() => {
  process.exitCode = 1
})

const printJson = (_tag: string, message: string, fields: Record<string, unknown>) =>
  Console.log(JSON.stringify({ error: { ...fields, _tag, message } }))

/** A failure of a command: stderr (unless the parser already showed it), stdout too with --json, exit 1. */
export const reportFailure = (json: boolean) => (error: unknown) =>
  Effect.gen(function*() {
    const { _tag, fields, message } = describe(error)
    const shownByParser = isObject(error) && error["_tag"] === "ShowHelp"
    if (!shownByParser) yield* Console.error(`${_tag}: ${message}`)
    if (json) yield* printJson(_tag, message, fields)
    yield* exitOne
  })

/** A defect is a bug, not a user's mistake: it still gets one line (no stack trace) and exit 1, never silence. */
export const reportDefect = (json: boolean) => (defect: unknown) => {
  const message = `Internal error: ${defect instanceof Error ? defect.message : String(defect)}. ` +
    `This is a bug in bilevel; please report it with the command that caused it.`
  return Console.error(message).pipe(
    Effect.andThen(json ? printJson("InternalError", message, {}) : Effect.void),
    Effect.andThen(exitOne)
  )
}

/**
 * With --json, the parser's own output of an invalid invocation (help on stdout, errors on stderr)
 * becomes the errors alone on stderr: stdout is kept for the one JSON object {@link reportFailure} prints.
 */
export const presenter = (json: boolean) =>
  json
    ? CliOutput.layerPresenter({
      present: (event) =>
        event._tag === "InvalidInvocation"
          ? Effect.gen(function*() {
            const formatter = yield* CliOutput.Formatter
            yield* Console.error(formatter.formatErrors(event.errors))
          })
          : CliOutput.defaultPresenter.present(event)
    })
    : Layer.empty
