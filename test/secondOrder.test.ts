/**
 * Second order of every op the framework differentiates twice, on every backend, with the fixed
 * gradients installed; test/secondOrderStock.test.ts runs the same table on stock tfjs. With
 * SECOND_ORDER_TABLE=1 both print the measured errors (the table in docs/second-order.md).
 */
import * as tf from "@tensorflow/tfjs-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { UnsupportedOp } from "../src/domain/errors.ts"
import { installSecondOrderGradients } from "../src/runtime/gradients.ts"
import { firstOrderError, secondOrderCases, secondOrderError, tolerance } from "./support/secondOrderCases.ts"
import { backendNames, useBackend } from "./support/tf.ts"

const supported = secondOrderCases.filter((c) => c.fixed === "correct")
const unsupported = secondOrderCases.filter((c) => c.fixed === "unsupported")

describe.each(backendNames)("second-order gradients on %s, fixed", (backend) => {
  const measured: Array<string> = []
  let tensorsBefore = 0

  beforeAll(async () => {
    await useBackend(backend)
    installSecondOrderGradients()
    installSecondOrderGradients() // idempotent
    tensorsBefore = tf.memory().numTensors
  })
  afterAll(() => {
    if (process.env["SECOND_ORDER_TABLE"]) console.log(measured.join("\n"))
  })

  it.each(supported)("$name agrees with finite differences", (c) => {
    const error = secondOrderError(c)
    measured.push(`fixed\t${backend}\t${c.name}\t${error.toExponential(1)}`)
    expect(error).toBeLessThan(tolerance)
  })

  it.each(unsupported)("$name keeps its first-order gradient", (c) => {
    expect(firstOrderError(c)).toBeLessThan(tolerance)
  })

  it("leaves no tensors behind", () => {
    expect(tf.memory().numTensors).toBe(tensorsBefore)
  })

  // Last: a gradient that throws leaves its tape's saved tensors behind (tfjs behaviour).
  it.each(unsupported)("$name inside a differentiated gradient fails with UnsupportedOp", (c) => {
    measured.push(`fixed\t${backend}\t${c.name}\tUnsupportedOp`)
    expect(() => secondOrderError(c)).toThrow(UnsupportedOp)
  })
})
