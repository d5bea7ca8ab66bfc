/**
 * Temporary directories of a test file: made under the temp directory with the prefix
 * `bilevel-<what>-test-` and removed when the file's tests end (test/support/leftovers.ts checks
 * that the suite leaves none behind).
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { afterAll } from "vitest"

/** A fresh directory, removed after the calling file's tests (call it at a file's or a suite's top level). */
export const scratchDir = (what: string): string => {
  const dir = mkdtempSync(path.join(tmpdir(), `bilevel-${what}-test-`))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}
