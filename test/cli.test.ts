/**
 * The `bilevel` CLI as a user meets it, spawned as a child process: every bad input exits non-zero
 * with one paragraph on stderr naming the field and what is allowed, and no stack trace; replay
 * and schema answer on stdout; and the paper's toy run ends at the bilevel solution.
 */
import { cpSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "vitest"
import { jsonSchema } from "../src/runtime/settings.ts"
import { iaGmA } from "../src/solvers/methods.ts"
import { quadratic } from "../src/tasks/quadratic.ts"
import { xStar, yStar } from "../src/tasks/toyNonconvex.ts"
import { bilevel, type Finished } from "./support/cli.ts"
import { scratchDir } from "./support/scratch.ts"

const scratch = scratchDir("cli")
const file = (name: string, text: string) => {
  const at = path.join(scratch, name)
  writeFileSync(at, text)
  return at
}
const fixture = (name: string) => path.join(import.meta.dirname, "fixtures", "records", name)

/** Asserts a user's mistake: exit ≠ 0, one paragraph on stderr that mentions each of `mentions`, no stack. */
const assertRejected = (finished: Finished, mentions: ReadonlyArray<string>) => {
  const message = finished.stderr.trim()
  assert.notStrictEqual(finished.code, 0, `exit code; stderr: ${message}`)
  assert.isAbove(message.length, 0, "a message on stderr")
  assert.notMatch(message, /\n\s*\n/, `one paragraph: ${message}`)
  assert.notMatch(finished.stderr, /^ {4}at /m, `no stack trace: ${message}`)
  for (const mention of mentions) assert.include(message, mention)
}

const run = (...args: Array<string>) => bilevel(["run", "toy-nonconvex", "--method", "rhg", "--backend", "cpu", ...args], { cwd: scratch })

// One concurrent suite, the longest test first, so that it runs beside the short ones rather than after them.
describe.concurrent("bilevel CLI", { timeout: 180_000 }, () => {
  it("the paper's toy with IAPTT-GM (500 outer steps) ends at x* = 11π/4, y* = −2, printing one JSON object", async () => {
    const finished = await bilevel(["run", "toy-nonconvex", "--method", "iaptt-gm", "--json", "--backend", "cpu"], { cwd: scratch })
    assert.strictEqual(finished.code, 0, finished.stderr)
    const lines = finished.stdout.trim().split("\n")
    assert.lengthOf(lines, 1, "exactly one line on stdout")
    const result = JSON.parse(lines[0]!)
    assert.strictEqual(result.outerSteps, 500)
    assert.approximately(result.final.x, xStar, 0.15)
    assert.approximately(result.final.y, yStar, 0.02)
    assert.approximately(result.final.xTail.mean, xStar, 0.05)
    assert.strictEqual(result.final.xTail.steps, 100)
  }, 300_000)

  describe("bad input", () => {
    it("an unknown task", async () => {
      assertRejected(await bilevel(["run", "toy-nonlinear", "--method", "rhg", "--backend", "cpu"]), [
        "task \"toy-nonlinear\"",
        "toy-nonconvex",
        "quadratic"
      ])
    })

    it("an unknown method", async () => {
      assertRejected(await bilevel(["run", "toy-nonconvex", "--method", "iaptt", "--backend", "cpu"]), ["method \"iaptt\"", "iaptt-gm", "rhg"])
    })

    it("an unknown backend", async () => {
      assertRejected(await bilevel(["run", "toy-nonconvex", "--method", "rhg", "--backend", "cuda"]), ["--backend", "cuda", "cpu", "wasm"])
    })

    it("an unknown setting", async () => {
      assertRejected(await run("--set", "innerStep=40"), ["\"innerStep\"", "innerSteps", "outerLr"])
    })

    it("a wrong-typed value", async () => {
      assertRejected(await run("--set", "innerSteps=many"), ["innerSteps", "number"])
    })

    it("a malformed config file", async () => {
      const broken = file("broken.json", "{\"innerSteps\": 40,")
      assertRejected(await run("--config", broken), [broken, "not valid JSON"])
    })

    it("an existing and an unwritable --out directory", async () => {
      const existing = path.join(scratch, "existing")
      mkdirSync(existing)
      writeFileSync(path.join(existing, "notes.txt"), "keep me")
      assertRejected(await run("--out", existing), [existing, "already exists", "never overwritten"])
      assert.strictEqual(readFileSync(path.join(existing, "notes.txt"), "utf8"), "keep me")
      const underFile = path.join(file("plain-file", ""), "run")
      assertRejected(await run("--out", underFile), [underFile, "cannot be created", "writable --out"])
    })

    it("a negative --checkpoint-every", async () => {
      assertRejected(await run("--checkpoint-every", "-5"), ["--checkpoint-every", "-5"])
    })

    it("replay of what is not a run record", async () => {
      assertRejected(await bilevel(["replay", scratch]), ["run.json", "is this a run directory?"])
    })

    it("a replay that differs from its record exits 1 naming the step, field and values", async () => {
      const perturbed = path.join(scratch, "perturbed")
      cpSync(fixture("toy-nonconvex-iaptt-gm"), perturbed, { recursive: true })
      const stepsFile = path.join(perturbed, "steps.ndjson")
      const lines = readFileSync(stepsFile, "utf8").trim().split("\n").map((l) => JSON.parse(l))
      const replayed = lines[5].F
      lines[5].F = replayed + 0.5
      writeFileSync(stepsFile, lines.map((l) => JSON.stringify(l)).join("\n") + "\n")
      const finished = await bilevel(["replay", perturbed, "--json"])
      assertRejected(finished, ["ReplayMismatch", "outer step 5", "\"F\"", String(replayed + 0.5), String(replayed)])
      const { error } = JSON.parse(finished.stdout)
      assert.deepInclude(error, { _tag: "ReplayMismatch", step: 5, field: "F", recorded: replayed + 0.5, replayed })
    })
  })

  describe("answers", () => {
    it("replay of a committed record: identical, as one JSON object with --json", async () => {
      const finished = await bilevel(["replay", fixture("quadratic-ls"), "--json"])
      assert.strictEqual(finished.code, 0, finished.stderr)
      const report = JSON.parse(finished.stdout)
      assert.include(report, { identical: true, recordedSteps: 20, replayedSteps: 20, backend: "cpu", tolerance: 0 })
    })

    it("schema prints the task's and the method's settings as one JSON Schema", async () => {
      const finished = await bilevel(["schema", "quadratic", "--method", "ia-gm-a"])
      assert.strictEqual(finished.code, 0, finished.stderr)
      const document = JSON.parse(finished.stdout)
      assert.strictEqual(document.$schema, "https://json-schema.org/draft/2020-12/schema")
      assert.strictEqual(document.additionalProperties, false)
      const properties = (schema: Parameters<typeof jsonSchema>[0]) => (jsonSchema(schema).schema as { properties: object }).properties
      assert.deepStrictEqual(document.properties, { ...properties(quadratic.settings), ...properties(iaGmA.settings) })
    })
  })
})
