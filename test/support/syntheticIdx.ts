/**
 * A tiny MNIST-format training file for the data hyper-cleaning tests: 10 class prototypes of
 * `side × side` pixels plus noise, labels uniform. Tasks read it through their ordinary `dataDir`
 * setting, so no test needs the real dataset.
 */
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { make as makeRng } from "../../src/domain/Rng.ts"

export const side = 6
export const examples = 400

/** Writes the train images and labels into `dir`. */
export const writeSyntheticIdx = (dir: string) => {
  const rng = makeRng(1234)
  const d = side * side
  const prototypes = Array.from({ length: 10 }, () => rng.array(d, rng.uniform))
  const labels = Uint8Array.from({ length: examples }, () => rng.int(0, 9))
  const pixels = new Uint8Array(examples * d)
  labels.forEach((label, i) => {
    for (let j = 0; j < d; j++) {
      const value = prototypes[label]![j]! + 0.35 * rng.normal()
      pixels[i * d + j] = Math.round(255 * Math.min(1, Math.max(0, value)))
    }
  })
  const header = (magic: number, dims: ReadonlyArray<number>) => {
    const view = new DataView(new ArrayBuffer(4 + 4 * dims.length))
    view.setUint32(0, magic)
    dims.forEach((n, i) => view.setInt32(4 + 4 * i, n))
    return new Uint8Array(view.buffer)
  }
  writeFileSync(path.join(dir, "train-images-idx3-ubyte"), Buffer.concat([header(0x803, [examples, side, side]), pixels]))
  writeFileSync(path.join(dir, "train-labels-idx1-ubyte"), Buffer.concat([header(0x801, [examples]), labels]))
}

/** A fresh temp directory holding the synthetic file. */
export const syntheticDataDir = (): string => {
  const dir = mkdtempSync(path.join(tmpdir(), "bilevel-idx-"))
  writeSyntheticIdx(dir)
  return dir
}
