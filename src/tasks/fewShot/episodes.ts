/**
 * N-way M-shot Q-query episodes from a class-indexed image source, with disjoint train / validation /
 * test class splits (the few-shot protocol: a class seen in meta-training never appears at test).
 *
 * Every draw takes a `RandomSource`, so an episode is a pure function of its key (src/domain/Random.ts):
 * the outer loop, a reverse pass, gradcheck and replay regenerate the same episode.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { DatasetError } from "../../domain/errors.ts"
import type { RandomSource } from "../../domain/Rng.ts"
import type { ImageShape } from "./backbones.ts"

/** Images grouped by class. */
export interface ClassImages {
  /** What the source is (a directory, a file), for messages. */
  readonly name: string
  readonly shape: ImageShape
  readonly classNames: ReadonlyArray<string>
  /** The indices of each class's images. */
  readonly byClass: ReadonlyArray<Int32Array>
  /** Writes image `index`'s pixels (in [0, 1], h·w·c values, HWC order) into `out` at `offset`. */
  readonly write: (index: number, out: Float32Array, offset: number) => void
}

export interface EpisodeShape {
  /** N: classes per episode. */
  readonly ways: number
  /** M: support images per class. */
  readonly shots: number
  /** Q: query images per class. */
  readonly queries: number
}

export interface ClassCounts {
  readonly train: number
  readonly validation: number
  readonly test: number
}

export type SplitName = keyof ClassCounts

/** Disjoint sets of class indices. */
export type ClassSplits = Readonly<Record<SplitName, Int32Array>>

/** One episode's images as indices into the source, class-major (class 0's images first), and their labels 0 … N − 1. */
export interface Episode {
  readonly support: Int32Array
  readonly supportLabels: Int32Array
  readonly query: Int32Array
  readonly queryLabels: Int32Array
}

/**
 * Splits the source's classes at random into train, validation and test classes of the given sizes,
 * failing when the source has too few classes, or a split that episodes are drawn from (size > 0)
 * has fewer than N classes, or a class has fewer than M + Q images.
 */
export const splitClasses = (
  source: ClassImages,
  counts: ClassCounts,
  shape: EpisodeShape,
  random: RandomSource
): Effect.Effect<ClassSplits, DatasetError> => {
  const total = counts.train + counts.validation + counts.test
  const available = source.classNames.length
  if (total > available) {
    return Effect.fail(new DatasetError({
      file: source.name,
      problem: `holds ${available} classes, fewer than the ${total} of the class splits ` +
        `(${counts.train} train + ${counts.validation} validation + ${counts.test} test)`,
      hint: "Lower trainClasses, validationClasses or testClasses, or use a source with more classes."
    }))
  }
  for (const split of ["train", "validation", "test"] as const) {
    if (counts[split] > 0 && counts[split] < shape.ways) {
      return Effect.fail(new DatasetError({
        file: source.name,
        problem: `its ${split} split has ${counts[split]} classes, fewer than the ${shape.ways} ways of an episode`,
        hint: `Give the ${split} split at least ${shape.ways} classes (${split}Classes), or lower ways.`
      }))
    }
  }
  const needed = shape.shots + shape.queries
  const short = source.byClass.findIndex((images) => images.length < needed)
  if (short >= 0) {
    return Effect.fail(new DatasetError({
      file: source.name,
      problem: `class "${source.classNames[short]}" has ${source.byClass[short]!.length} images, fewer than the ` +
        `${needed} an episode takes from each class (${shape.shots} shots + ${shape.queries} queries)`,
      hint: "Lower shots or queries, or add images to that class."
    }))
  }
  const order = random.permutation(available)
  return Effect.succeed({
    train: order.slice(0, counts.train),
    validation: order.slice(counts.train, counts.train + counts.validation),
    test: order.slice(counts.train + counts.validation, total)
  })
}

/** An episode of `shape` from the classes `classes`: N of them at random, M + Q distinct images of each. */
export const drawEpisode = (
  source: ClassImages,
  classes: Int32Array,
  shape: EpisodeShape,
  random: RandomSource
): Episode => {
  const { queries, shots, ways } = shape
  const chosen = random.permutation(classes.length).slice(0, ways)
  const support = new Int32Array(ways * shots)
  const query = new Int32Array(ways * queries)
  chosen.forEach((c, label) => {
    const images = source.byClass[classes[c]!]!
    const picked = random.permutation(images.length)
    for (let s = 0; s < shots; s++) support[label * shots + s] = images[picked[s]!]!
    for (let q = 0; q < queries; q++) query[label * queries + q] = images[picked[shots + q]!]!
  })
  const labels = (per: number) => Int32Array.from({ length: ways * per }, (_, i) => Math.floor(i / per))
  return { support, supportLabels: labels(shots), query, queryLabels: labels(queries) }
}

/** The images at `indices` as one [n, h, w, c] tensor. */
export const imageTensor = (source: ClassImages, indices: ArrayLike<number>): tf.Tensor4D => {
  const [h, w, c] = source.shape
  const size = h * w * c
  const pixels = new Float32Array(indices.length * size)
  for (let i = 0; i < indices.length; i++) source.write(indices[i]!, pixels, i * size)
  return tf.tensor4d(pixels, [indices.length, h, w, c])
}

/** Groups example indices by label: the classes 0 … classes − 1 of a labelled dataset. */
export const indexByClass = (labels: ArrayLike<number>, classes: number): Array<Int32Array> => {
  const lists: Array<Array<number>> = Array.from({ length: classes }, () => [])
  for (let i = 0; i < labels.length; i++) lists[labels[i]!]!.push(i)
  return lists.map((list) => Int32Array.from(list))
}
