/**
 * vitest global setup: the suite must leave no temporary directory behind. Every file's workers
 * (and the CLI processes they spawn) inherit a TMPDIR of their own, a fresh directory: so other
 * processes on the machine do not count, and a test's directory (`bilevel-…`) still in it when the
 * suite ends fails the run, named, before it is removed. (Tools keep caches there too: tsx's `tsx-0`.)
 */
import { mkdtempSync, readdirSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"

export default function setup() {
  const root = mkdtempSync(path.join(tmpdir(), "bilevel-suite-"))
  process.env["TMPDIR"] = root
  return () => {
    const left = readdirSync(root).filter((name) => name.startsWith("bilevel-"))
    rmSync(root, { recursive: true, force: true })
    if (left.length > 0) {
      throw new Error(`The tests left ${left.length} temporary director${left.length > 1 ? "ies" : "y"} behind: ${left.join(", ")}`)
    }
  }
}
