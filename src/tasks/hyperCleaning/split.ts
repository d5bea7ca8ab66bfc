/**
 * The data of a hyper-cleaning run, drawn from one MNIST-format file with the run's seeded Rng:
 * disjoint train / validation / test splits, then a fraction of the training labels
 * replaced. Draw order, fixed so a run is a function of its seed: one permutation of the file's
 * examples (train, then validation, then test, in that order), one permutation of the training
 * split (its first ⌊rate·n⌋ examples are corrupted), then one new label per corrupted example.
 */
import type { RandomSource } from "../../domain/Rng.ts"
import type { MnistLike } from "../mnistLike.ts"

/**
 * `different`: a uniformly random other class (the paper). `any`: uniformly from all classes, so
 * about 1/classes of the corrupted labels stay right (the official code).
 */
export type Corruption = "different" | "any"

export interface Examples {
  /** n × d features, row-major. */
  readonly features: Float32Array
  readonly labels: Int32Array
  readonly n: number
}

export interface CleaningData {
  readonly inputs: number
  readonly classes: number
  /** Training split with its observed (partly corrupted) labels. */
  readonly train: Examples
  /** The training split's true labels. */
  readonly trueTrainLabels: Int32Array
  /** Whether each training label is right (observed = true). A corrupted example drawn back to its own class under `any` counts as clean. */
  readonly clean: ReadonlyArray<boolean>
  /** How many training examples were drawn for corruption. */
  readonly corrupted: number
  readonly validation: Examples
  readonly test: Examples
}

export interface SplitSizes {
  readonly trainSize: number
  readonly valSize: number
  readonly testSize: number
}

const take = (source: MnistLike, indices: Int32Array): Examples => {
  const d = source.rows * source.cols
  const features = new Float32Array(indices.length * d)
  const labels = new Int32Array(indices.length)
  indices.forEach((index, row) => {
    features.set(source.images.subarray(index * d, (index + 1) * d), row * d)
    labels[row] = source.labels[index]!
  })
  return { features, labels, n: indices.length }
}

/** Draws the splits and corrupts the training labels. The caller checks the sizes fit in `source`. */
export const drawCleaningData = (
  source: MnistLike,
  rng: RandomSource,
  options: SplitSizes & { readonly corruptionRate: number; readonly corruption: Corruption; readonly classes: number }
): CleaningData => {
  const order = rng.permutation(source.n)
  const { testSize, trainSize, valSize } = options
  const train = take(source, order.subarray(0, trainSize))
  const validation = take(source, order.subarray(trainSize, trainSize + valSize))
  const test = take(source, order.subarray(trainSize + valSize, trainSize + valSize + testSize))
  const corrupted = Math.floor(options.corruptionRate * trainSize)
  const observed = Int32Array.from(train.labels)
  for (const i of rng.permutation(trainSize).subarray(0, corrupted)) {
    const label = train.labels[i]!
    if (options.corruption === "any") {
      observed[i] = rng.int(0, options.classes - 1)
    } else {
      const other = rng.int(0, options.classes - 2)
      observed[i] = other >= label ? other + 1 : other
    }
  }
  return {
    inputs: source.rows * source.cols,
    classes: options.classes,
    train: { ...train, labels: observed },
    trueTrainLabels: train.labels,
    clean: Array.from(observed, (label, i) => label === train.labels[i]),
    corrupted,
    validation,
    test
  }
}
