/**
 * First-order hypergradient (FOMAML-style): dy/dx and dy/dy_0 are taken as 0 and I, so
 * dF/dx ≈ ∇_x F(x, y_k̄) and dF/dy_0 ≈ ∇_y F(x, y_k̄). Cheapest; exact only when y does not depend on x.
 */
import { Effect } from "effect"
import { iterateY, LowerLevel } from "../dynamics/Iterate.ts"
import type { HypergradientStrategy } from "./Hypergradient.ts"
import { gradients } from "./vjp.ts"

export const firstOrder: HypergradientStrategy<"approximate"> = {
  name: "first-order",
  initGradient: "approximate",
  exact: false,
  needsPrefix: false,
  compute: (_dynamics, trajectory) =>
    Effect.map(Effect.service(LowerLevel), ({ at, x }) => {
      const [gx, gy] = gradients((xx, yy) => at("upper", 0).upper(xx!, yy!), [x, iterateY(trajectory.selected)])
      return { x: gx!, y0: gy!, reverseSteps: 0, hvps: 0 }
    })
}
