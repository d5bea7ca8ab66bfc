/**
 * A tiny MNIST-format training file for the data hyper-cleaning tests: 10 class prototypes of
 * `side × side` pixels plus noise, labels uniform (the benchmark's generator at a test's size). Tasks
 * read it through their ordinary `dataDir` setting, so no test needs the real dataset.
 */
import { rmSync } from "node:fs"
import { afterAll } from "vitest"
import { writeSyntheticTrainingFile } from "../../bench/syntheticData.ts"

export const side = 6
export const examples = 400

/** A fresh temp directory holding the synthetic file, removed after the calling file's tests. */
export const syntheticDataDir = (): string => {
  const dir = writeSyntheticTrainingFile(examples, side, { seed: 1234, noise: 0.35, prefix: "bilevel-idx-test-" })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}
