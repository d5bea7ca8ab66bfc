/**
 * Small tensor utilities every layer shares: scoped ownership, flat-vector algebra, host reads.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Exit } from "effect"

/**
 * Runs `self` inside a tfjs tensor scope: every tensor allocated while it runs is disposed when it
 * ends, except those reachable from its result, which move to the enclosing scope. On failure
 * everything allocated is released.
 */
export const tensorScope = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.suspend(() => {
    tf.engine().startScope()
    return self.pipe(
      Effect.onExit((exit) =>
        Effect.sync(() => tf.engine().endScope(Exit.isSuccess(exit) ? exit.value as tf.TensorContainer : undefined))
      )
    )
  })

/** ⟨a, b⟩ of two flat vectors. */
export const dot = (a: tf.Tensor, b: tf.Tensor): tf.Scalar => tf.sum(tf.mul(a, b))

/** Euclidean norm. */
export const norm = (a: tf.Tensor): tf.Scalar => tf.sqrt(tf.sum(tf.square(a)))

/**
 * A tensor's values on the host as its typed array, read asynchronously: every read of the framework
 * is one, since webgpu in Node has no synchronous read (docs/backends.md); on cpu and wasm it costs no more.
 */
export const readData = <D extends tf.DataType = "float32">(t: tf.Tensor): Effect.Effect<tf.DataTypeMap[D]> =>
  Effect.promise(() => t.data<D>())

/** A flat tensor's values on the host as plain numbers, read asynchronously (see {@link readData}). */
export const readVector = (t: tf.Tensor): Effect.Effect<Array<number>> =>
  Effect.map(readData(t), (values) => Array.from(values))

/** A scalar tensor's value on the host, read asynchronously (see {@link readVector}). */
export const readScalar = (t: tf.Tensor): Effect.Effect<number> => Effect.map(readVector(t), (values) => values[0]!)

/** Identity: the projection onto an unconstrained set. */
export const identity = <T>(t: T): T => t

/** `tf.tidy` for any result holding tensors (tfjs's types reject readonly arrays and nested records). */
export const tidy = <T>(fn: () => T): T =>
  tf.tidy(() => fn() as unknown as tf.TensorContainer) as unknown as T
