/**
 * Structured variables: x (or y) as named blocks — a network's layers, a head — laid out in one
 * flat vector. Strategies that need one vector (CG, Neumann, the reverse pass) see the flat vector
 * as it is; a model views its blocks with `unflatten`, whose slices and reshapes have exact
 * derivatives of every order, and a UL optimizer can treat blocks differently (`partition` in
 * src/solvers/optimizers.ts). The vector is stored once: no block is copied per LL step beyond the
 * slice the model reads.
 *
 *     const backbone = Blocks.layout({ conv1: [3, 3, 1, 32], bn1: [32], head: [800, 5] })
 *     const { conv1, head } = Blocks.unflatten(backbone, x)
 */
import * as tf from "@tensorflow/tfjs-core"
import type { Vector } from "./Problem.ts"

export interface Block {
  readonly name: string
  readonly shape: ReadonlyArray<number>
  /** Where the block starts in the flat vector, and how many entries it has. */
  readonly offset: number
  readonly size: number
}

export interface Layout {
  readonly blocks: ReadonlyArray<Block>
  /** The flat vector's length. */
  readonly size: number
}

/** The layout of named blocks of the given shapes, in the order given. */
export const layout = (shapes: Readonly<Record<string, ReadonlyArray<number>>>): Layout => {
  let offset = 0
  const blocks = Object.entries(shapes).map(([name, shape]): Block => {
    const size = shape.reduce((a, b) => a * b, 1)
    const block = { name, shape, offset, size }
    offset += size
    return block
  })
  return { blocks, size: offset }
}

/** The blocks of a flat vector, each in its shape. */
export const unflatten = (self: Layout, v: Vector): Record<string, tf.Tensor> =>
  Object.fromEntries(self.blocks.map((b) => [b.name, tf.reshape(tf.slice(v, b.offset, b.size), [...b.shape])]))

/** The flat vector of blocks given by name (every block of the layout, any shape of the right size). */
export const flatten = (self: Layout, blocks: Readonly<Record<string, tf.Tensor>>): Vector =>
  tf.concat(self.blocks.map((b) => {
    const block = blocks[b.name]
    if (block === undefined || block.size !== b.size) {
      throw new RangeError(`Blocks.flatten: block "${b.name}" needs ${b.size} entries, got ${block?.size ?? "none"}`)
    }
    return tf.reshape(block, [b.size])
  }))
