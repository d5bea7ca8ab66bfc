/**
 * Feature extractors for few-shot classification, as structured UL variables: x is the flat vector of
 * a backbone's named blocks (src/domain/Blocks.ts), and `apply` gives the features of a batch of
 * images with their hand-written VJP back to x (./layers.ts).
 *
 * - ConvNet-4 (Vinyals et al.; the paper's Table 5): 4 × [3×3 conv, batch norm, ReLU, 2×2 max-pool].
 * - ResNet-12 (Oreshkin et al., Lee et al.): 4 residual blocks of 3 × [3×3 conv, batch norm] with
 *   ReLUs between, a 1×1 conv + batch-norm shortcut, a ReLU after the sum, then a 2×2 max-pool.
 *
 * Max-pooling always follows a ReLU. Convolutions are He-initialized from the run's random source;
 * batch-norm scales start at 1 and shifts at 0.
 */
import * as tf from "@tensorflow/tfjs-core"
import * as Blocks from "../../domain/Blocks.ts"
import type { Vector } from "../../domain/Problem.ts"
import type { RandomSource } from "../../domain/Rng.ts"
import { batchNorm, conv, maxPool, type Pass, relu, residual, sequence } from "./layers.ts"

/** Height, width and channels of a backbone's input images. */
export type ImageShape = readonly [number, number, number]

export interface Backbone {
  readonly name: string
  readonly input: ImageShape
  readonly layout: Blocks.Layout
  /** Length of one image's feature vector. */
  readonly features: number
  /** Blocks that are batch-norm scales or shifts (no weight decay on them). */
  readonly normBlocks: ReadonlyArray<string>
  /** Initial parameters, drawn from `random`. */
  readonly init: (random: RandomSource) => Float32Array
  /**
   * Features [n, features] of `images` [n, h, w, c] at parameters x, and the VJP of a cotangent of
   * the features back to x. The VJP reads tensors the forward pass made: call it in the same scope.
   */
  readonly apply: (x: Vector, images: tf.Tensor4D) => {
    readonly features: tf.Tensor2D
    readonly vjp: (cotangent: tf.Tensor) => Vector
  }
}

/** Spatial size after a 2×2 max-pool. */
const pooled = (size: number) => Math.floor(size / 2)

/** 2×2 max-poolings in either backbone: the smallest input is 2⁴ = 16 pixels a side. */
export const poolings = 4

/** Height and width after the backbone's poolings. */
const outputSize = (input: ImageShape): readonly [number, number] => {
  let size: readonly [number, number] = [input[0], input[1]]
  for (let i = 0; i < poolings; i++) size = [pooled(size[0]), pooled(size[1])]
  return size
}

/**
 * Why `input` cannot go through a backbone (images smaller than 2^poolings a side pool to nothing),
 * or undefined when it can.
 */
export const inputProblem = (input: ImageShape): string | undefined => {
  const [h, w] = outputSize(input)
  return h >= 1 && w >= 1
    ? undefined
    : `${input[0]}×${input[1]} images are too small for the backbone's ${poolings} 2×2 max-poolings, which leave ` +
      `${h}×${w} features; the input must be at least ${2 ** poolings}×${2 ** poolings}`
}

/** The output size, or a RangeError for an input too small (callers validate first, see {@link inputProblem}). */
const checkedOutputSize = (name: string, input: ImageShape): readonly [number, number] => {
  const problem = inputProblem(input)
  if (problem !== undefined) throw new RangeError(`${name}: ${problem}`)
  return outputSize(input)
}

/** conv → batch norm (→ ReLU) with the blocks `${name}`, `${name}Scale`, `${name}Shift`. */
const convNorm = (params: Record<string, tf.Tensor>, name: string, activate: boolean) => (x: tf.Tensor4D): Pass =>
  sequence(x, [
    (h) => conv(h, params[name] as tf.Tensor4D, name),
    (h) => batchNorm(h, params[`${name}Scale`]!, params[`${name}Shift`]!, [`${name}Scale`, `${name}Shift`]),
    ...(activate ? [relu] : [])
  ])

const convNormShapes = (name: string, k: number, from: number, to: number): Record<string, ReadonlyArray<number>> => ({
  [name]: [k, k, from, to],
  [`${name}Scale`]: [to],
  [`${name}Shift`]: [to]
})

/** A backbone from its block shapes and forward pass (`body` on the unflattened blocks). */
const make = (options: {
  readonly name: string
  readonly input: ImageShape
  readonly shapes: Record<string, ReadonlyArray<number>>
  readonly output: readonly [number, number, number]
  readonly body: (params: Record<string, tf.Tensor>) => (images: tf.Tensor4D) => Pass
}): Backbone => {
  const layout = Blocks.layout(options.shapes)
  const normBlocks = layout.blocks.filter((b) => /(Scale|Shift)$/.test(b.name)).map((b) => b.name)
  const features = options.output[0] * options.output[1] * options.output[2]
  return {
    name: options.name,
    input: options.input,
    layout,
    features,
    normBlocks,
    init: (random) => {
      const values = new Float32Array(layout.size)
      for (const block of layout.blocks) {
        if (block.name.endsWith("Scale")) values.fill(1, block.offset, block.offset + block.size)
        else if (!block.name.endsWith("Shift")) {
          const [k, , from] = block.shape as [number, number, number, number]
          const std = Math.sqrt(2 / (k * k * from))
          for (let i = 0; i < block.size; i++) values[block.offset + i] = std * random.normal()
        }
      }
      return values
    },
    apply: (x, images) => {
      const params = Blocks.unflatten(layout, x)
      const pass = options.body(params)(images)
      const n = images.shape[0]
      return {
        features: tf.reshape(pass.output, [n, features]),
        vjp: (cotangent) => Blocks.flatten(layout, pass.backward(tf.reshape(cotangent, pass.output.shape), false).params)
      }
    }
  }
}

/** ConvNet-4 with `channels` channels in every block. */
export const convNet4 = (input: ImageShape, channels: number): Backbone => {
  const names = Array.from({ length: poolings }, (_, i) => `conv${i + 1}`)
  const size = checkedOutputSize("convNet4", input)
  return make({
    name: "convnet4",
    input,
    shapes: Object.assign({}, ...names.map((name, i) => convNormShapes(name, 3, i === 0 ? input[2] : channels, channels))),
    output: [size[0], size[1], channels],
    body: (params) => (images) => sequence(images, names.flatMap((name) => [convNorm(params, name, true), maxPool]))
  })
}

/** ResNet-12 with the channels of its four residual blocks (commonly 64, 160, 320, 640). */
export const resNet12 = (input: ImageShape, channels: readonly [number, number, number, number]): Backbone => {
  const size = checkedOutputSize("resNet12", input)
  const shapes: Record<string, ReadonlyArray<number>> = {}
  channels.forEach((to, b) => {
    const from = b === 0 ? input[2] : channels[b - 1]!
    Object.assign(
      shapes,
      convNormShapes(`block${b + 1}a`, 3, from, to),
      convNormShapes(`block${b + 1}b`, 3, to, to),
      convNormShapes(`block${b + 1}c`, 3, to, to),
      convNormShapes(`block${b + 1}shortcut`, 1, from, to)
    )
  })
  return make({
    name: "resnet12",
    input,
    shapes,
    output: [size[0], size[1], channels[3]],
    body: (params) => (images) =>
      sequence(
        images,
        channels.flatMap((_, b) => {
          const name = `block${b + 1}`
          return [
            (h: tf.Tensor4D) =>
              residual(
                h,
                (r) => sequence(r, [convNorm(params, `${name}a`, true), convNorm(params, `${name}b`, true), convNorm(params, `${name}c`, false)]),
                convNorm(params, `${name}shortcut`, false)
              ),
            maxPool
          ]
        })
      )
  })
}
