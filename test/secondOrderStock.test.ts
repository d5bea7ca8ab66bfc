/**
 * The table of test/secondOrder.test.ts on tfjs's stock gradients. This file never installs the fix
 * (vitest runs each file in its own process, so the gradient registry is clean): it shows what the
 * fix repairs, i.e. that without it test/secondOrder.test.ts fails.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type SecondOrderCase, secondOrderCases, secondOrderError, tolerance } from "./support/secondOrderCases.ts"
import { backendNames, useBackend } from "./support/tf.ts"

const expecting = (stock: SecondOrderCase["stock"]) => secondOrderCases.filter((c) => c.stock === stock)

describe.each(backendNames)("second-order gradients on %s, stock tfjs", (backend) => {
  const measured: Array<string> = []
  const record = (c: SecondOrderCase, result: string) => measured.push(`stock\t${backend}\t${c.name}\t${result}`)

  beforeAll(() => useBackend(backend))
  afterAll(() => {
    if (process.env["SECOND_ORDER_TABLE"]) console.log(measured.join("\n"))
  })

  it.each(expecting("wrong"))("$name is silently wrong", (c) => {
    const error = secondOrderError(c)
    record(c, error.toExponential(1))
    expect(error).toBeGreaterThan(tolerance)
  })

  it.each(expecting("throws"))("$name throws", (c) => {
    record(c, "throws")
    expect(() => secondOrderError(c)).toThrow(/gradient function not found/)
  })

  it.each(expecting("correct"))("$name is already right", (c) => {
    const error = secondOrderError(c)
    record(c, error.toExponential(1))
    expect(error).toBeLessThan(tolerance)
  })
})
