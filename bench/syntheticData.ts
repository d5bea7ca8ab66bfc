/**
 * A synthetic MNIST-format training file of FashionMNIST's shape (28×28 images, 10 classes), for
 * timing hyper-cleaning where the real dataset is not installed: the cost of a hypergradient depends
 * on the shapes, not on the pixels. 10 class prototypes plus noise, uniform labels, from a fixed seed.
 */
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { make as makeRng } from "../src/domain/Rng.ts"

const header = (magic: number, dims: ReadonlyArray<number>) => {
  const view = new DataView(new ArrayBuffer(4 + 4 * dims.length))
  view.setUint32(0, magic)
  dims.forEach((n, i) => view.setInt32(4 + 4 * i, n))
  return new Uint8Array(view.buffer)
}

/**
 * Writes `train-{images-idx3,labels-idx1}-ubyte` with `examples` images of `side × side` pixels to a new
 * temp dir (named after `prefix`); returns it.
 */
export const writeSyntheticTrainingFile = (
  examples = 20_000,
  side = 28,
  options: { readonly seed?: number; readonly noise?: number; readonly prefix?: string } = {}
): string => {
  const dir = mkdtempSync(path.join(tmpdir(), options.prefix ?? "bench-mnist-like-"))
  const rng = makeRng(options.seed ?? 2024)
  const d = side * side
  const prototypes = Array.from({ length: 10 }, () => rng.array(d, rng.uniform))
  const labels = Uint8Array.from({ length: examples }, () => rng.int(0, 9))
  const pixels = new Uint8Array(examples * d)
  labels.forEach((label, i) => {
    for (let j = 0; j < d; j++) {
      const value = prototypes[label]![j]! + (options.noise ?? 0.3) * rng.normal()
      pixels[i * d + j] = Math.round(255 * Math.min(1, Math.max(0, value)))
    }
  })
  writeFileSync(path.join(dir, "train-images-idx3-ubyte"), Buffer.concat([header(0x803, [examples, side, side]), pixels]))
  writeFileSync(path.join(dir, "train-labels-idx1-ubyte"), Buffer.concat([header(0x801, [examples]), labels]))
  return dir
}
