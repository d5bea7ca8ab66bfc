import { check, optimize } from "effect-bilevel"
import ridge from "./ridge.js"

for (const method of ["rhg", "iaptt-gm"]) {
  const { reference, relError } = await check(ridge, { method })
  console.log(`${method} hypergradient vs ${reference}: relative error ${relError.toExponential(1)}`)
}
const run = await optimize(ridge, { method: "iaptt-gm" })
console.log(`λ = ${Math.exp(run.x[0]!).toFixed(3)}; validation error ${run.F[0]!.toFixed(2)} → ${run.F.at(-1)!.toFixed(2)}`)
