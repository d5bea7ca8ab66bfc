/**
 * A tiny synthetic class-indexed image source for few-shot tests: each class is a random template,
 * each image its template plus noise, so a backbone can learn features that tell classes apart.
 */
import { make } from "../../src/domain/Rng.ts"
import type { ClassImages } from "../../src/tasks/fewShot/episodes.ts"

export const syntheticSource = (options: {
  readonly classes: number
  readonly perClass: number
  readonly size?: number
  readonly noise?: number
  readonly seed?: number
}): ClassImages => {
  const { classes, perClass, size = 16, noise = 0.3, seed = 1 } = options
  const random = make(seed)
  const pixels = size * size
  const templates = Array.from({ length: classes }, () => random.array(pixels, random.uniform))
  const images = new Float32Array(classes * perClass * pixels)
  for (let c = 0; c < classes; c++) {
    for (let i = 0; i < perClass; i++) {
      const offset = (c * perClass + i) * pixels
      for (let p = 0; p < pixels; p++) images[offset + p] = Math.min(1, Math.max(0, templates[c]![p]! + noise * random.normal()))
    }
  }
  return {
    name: "synthetic",
    shape: [size, size, 1],
    classNames: Array.from({ length: classes }, (_, c) => `class${c}`),
    byClass: Array.from({ length: classes }, (_, c) => Int32Array.from({ length: perClass }, (__, i) => c * perClass + i)),
    write: (index, out, offset) => out.set(images.subarray(index * pixels, (index + 1) * pixels), offset)
  }
}
