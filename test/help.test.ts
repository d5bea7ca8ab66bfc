/**
 * Help that teaches: every command's `--help` (each `reproduce` experiment's too) has examples, and
 * every one of its flags a description.
 */
import { assert, describe, it } from "vitest"
import { experiments } from "../src/runtime/reproduce/experiments.ts"
import { bilevel } from "./support/cli.ts"

const subcommands = [
  "run", "methods", "tasks", "gradcheck", "schema", "plot", "compare", "export", "replay", "evaluate", "resume", "reproduce", "sweep",
  "runner"
]
const commands = [[], ...subcommands.map((c) => [c]), ...experiments.map((e) => ["reproduce", e.name])]

/** The lines of one section of a help text (from its heading to the next blank line). */
const section = (help: string, heading: string) => {
  const from = help.split("\n").indexOf(heading)
  if (from < 0) return []
  const lines = help.split("\n").slice(from + 1)
  return lines.slice(0, lines.findIndex((line) => line.trim() === "") >>> 0)
}

describe.concurrent("bilevel --help", { timeout: 120_000 }, () => {
  it("covers every subcommand the root help lists", async () => {
    const { stdout } = await bilevel(["--help"])
    const lines = section(stdout, "SUBCOMMANDS")
    // The section runs up to the next heading (EXAMPLES follows it without a blank line).
    const listed = lines.slice(0, lines.findIndex((line) => !line.startsWith(" ")) >>> 0).map((line) => line.trim().split(/\s+/)[0]!)
    assert.deepStrictEqual(listed, subcommands)
  })

  for (const command of commands) {
    it(`bilevel ${command.join(" ")}: examples, and a description for every flag`, async () => {
      const { code, stdout } = await bilevel([...command, "--help"])
      assert.strictEqual(code, 0)
      assert.isAbove(section(stdout, "EXAMPLES").length, 0, stdout)
      for (const flag of section(stdout, "FLAGS")) {
        // `  --name [type]  description`: two spaces or more, then words.
        assert.match(flag, /^\s+--[\w-]+(, -\w)?( \S+)?\s{2,}\S/, `no description: ${flag}`)
      }
    })
  }
})
