/**
 * What a run record says about where it came from, beside its settings: the versions of this package
 * and of the libraries that decide its numbers, and the git commit of the directory it was started in.
 */
import { execFileSync } from "node:child_process"
import { createRequire } from "node:module"

const require = createRequire(import.meta.url)
const versionOf = (packageJson: string) => (require(packageJson) as { version: string }).version

/** This package's version (its package.json is two folders up from src/runtime and dist/runtime alike). */
export const packageVersion: string = versionOf("../../package.json")

export const versions = (): Record<string, string> => ({
  "effect-bilevel": packageVersion,
  node: process.version,
  effect: versionOf("effect/package.json"),
  "@tensorflow/tfjs-core": versionOf("@tensorflow/tfjs-core/package.json")
})

export interface GitState {
  readonly commit: string
  /** Tracked files differ from the commit: the commit alone does not reproduce the code that ran. */
  readonly dirty: boolean
}

/** The commit checked out in `dir`'s repository; absent outside one (or without git). */
export const gitState = (dir: string = process.cwd()): GitState | undefined => {
  const git = (...args: Array<string>) =>
    execFileSync("git", args, { cwd: dir, stdio: ["ignore", "pipe", "ignore"], encoding: "utf8" }).trim()
  try {
    return { commit: git("rev-parse", "HEAD"), dirty: git("status", "--porcelain", "--untracked-files=no") !== "" }
  } catch {
    return undefined
  }
}
