import * as tf from "@tensorflow/tfjs-core"
import { Effect, Schema } from "effect"
import { commonSettings, count, defineTask, Rng } from "effect-bilevel"

export default defineTask({
  name: "ridge",
  description: "Ridge regression, λ = e^x tuned on validation data",
  settings: Schema.Struct({
    ...commonSettings({ outerSteps: 40, innerSteps: 30, innerLr: 0.1, outerLr: 0.1 }),
    examples: count(30, "training (and validation) examples"),
    features: count(20, "features d")
  }),
  make: (s) =>
    Effect.gen(function*() {
      const rng = yield* Rng
      const truth = tf.tensor2d(rng.array(s.features, rng.normal), [s.features, 1])
      const split = () => {
        const inputs = tf.tensor2d(rng.array(s.examples * s.features, rng.normal), [s.examples, s.features])
        const noise = tf.tensor2d(rng.array(s.examples, rng.normal), [s.examples, 1])
        return { inputs, targets: tf.add(tf.matMul(inputs, truth), tf.mul(3, noise)) }
      }
      const [train, validation] = [split(), split()]
      const error = (data: typeof train, y: tf.Tensor) =>
        tf.mean(tf.square(tf.sub(tf.matMul(data.inputs, tf.reshape(y, [-1, 1])), data.targets)))
      return {
        problem: {
          lower: (x, y) => tf.add(error(train, y), tf.mul(tf.exp(tf.sum(x)), tf.mean(tf.square(y)))),
          upper: (_x, y) => error(validation, y)
        },
        x0: tf.tensor1d([0]),
        y0: tf.zeros([s.features])
      }
    })
})
