/**
 * Hypergradient strategies against ground truth: the quadratic task's float64 closed form,
 * and agreement across strategies as K, CG iterations and Neumann terms grow.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as Backend from "../src/runtime/Backend.ts"
import { gradcheck } from "../src/runtime/gradcheck.ts"

const quadratic = (method: string, settings: Record<string, unknown>) =>
  gradcheck({ task: "quadratic", method, seed: 3, settings: { dimX: 20, dimY: 20, ...settings } })

layer(Layer.merge(Backend.layer("cpu"), NodeServices.layer))("hypergradients on the quadratic task", (it) => {
  it.effect("RHG with large K, LS with enough CG iterations and AID-FP match the closed form to 1e-3; NS to 1e-2", () =>
    Effect.gen(function*() {
      const rhg = yield* quadratic("rhg", { innerSteps: 300 })
      const ls = yield* quadratic("ls", { innerSteps: 300, cgIters: 40 })
      const aid = yield* quadratic("aid-fp", { innerSteps: 300, fpIters: 200 })
      const ns = yield* quadratic("ns", { innerSteps: 300, neumannTerms: 100 })
      for (const r of [rhg, ls, aid, ns]) assert.strictEqual(r.reference, "closed-form")
      assert.isBelow(rhg.relError, 1e-3, `rhg ${rhg.relError}`)
      assert.isBelow(ls.relError, 1e-3, `ls ${ls.relError}`)
      assert.isBelow(aid.relError, 1e-3, `aid-fp ${aid.relError}`)
      assert.isBelow(ns.relError, 1e-2, `ns ${ns.relError}`)
    }))

  it.effect("each strategy's error shrinks as its budget grows (K, CG iterations, Neumann terms)", () =>
    Effect.gen(function*() {
      const errors = (method: string, key: string, budgets: ReadonlyArray<number>, base: Record<string, unknown> = { innerSteps: 300 }) =>
        Effect.forEach(budgets, (b) => Effect.map(quadratic(method, { ...base, [key]: b }), (r) => r.relError))
      const decreasing = (name: string, e: ReadonlyArray<number>) => {
        for (let i = 1; i < e.length; i++) assert.isBelow(e[i]!, e[i - 1]!, `${name}: ${e.join(", ")}`)
      }
      decreasing("rhg K", yield* errors("rhg", "innerSteps", [5, 20, 80], {}))
      decreasing("ls cg", yield* errors("ls", "cgIters", [1, 4, 16]))
      decreasing("ns terms", yield* errors("ns", "neumannTerms", [2, 8, 32]))
      decreasing("aid-fp iterations", yield* errors("aid-fp", "fpIters", [2, 8, 32]))
    }))

  it.effect("costs are counted from the streams: K forward steps, K reverse steps, J + 1 products", () =>
    Effect.gen(function*() {
      const rhg = yield* quadratic("rhg", { innerSteps: 25 })
      assert.deepStrictEqual([rhg.cost.innerSteps, rhg.cost.reverseSteps, rhg.cost.hvps], [25, 25, 0])
      const trhg = yield* quadratic("t-rhg", { innerSteps: 25, lastM: 7 })
      assert.deepStrictEqual([trhg.cost.innerSteps, trhg.cost.reverseSteps], [25, 7])
      const ls = yield* quadratic("ls", { innerSteps: 25, cgIters: 9 })
      assert.deepStrictEqual([ls.cost.reverseSteps, ls.cost.hvps], [0, 10])
      assert.isAbove(rhg.cost.peakBytes, ls.cost.peakBytes, "reverse mode stores the trajectory, implicit does not")
    }))

  it.effect("T-RHG with M ≥ K is RHG; with M < K it is a different (truncated) estimate", () =>
    Effect.gen(function*() {
      const rhg = yield* quadratic("rhg", { innerSteps: 15 })
      const full = yield* quadratic("t-rhg", { innerSteps: 15, lastM: 15 })
      const cut = yield* quadratic("t-rhg", { innerSteps: 15, lastM: 3 })
      assert.deepStrictEqual(full.hypergradient, rhg.hypergradient)
      assert.notDeepEqual(cut.hypergradient, rhg.hypergradient)
    }))
})
