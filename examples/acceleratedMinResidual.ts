import { fista, reverse, Solver } from "effect-bilevel"

/** Nesterov-accelerated LL, learned initialization, stop early, keep the most stationary iterate. */
export const acceleratedMinResidual = (options: { readonly lr: number; readonly innerSteps: number }) =>
  Solver.make(fista({ lr: options.lr })).pipe(
    Solver.auxiliaryInit, //                                             y_0 = z, learned beside x
    Solver.take(options.innerSteps), //                                  at most K steps
    Solver.stopAtResidual({ tolerance: 1e-5, alpha: options.lr }), //   or until ‖R_α‖ ≤ 1e-5
    Solver.truncateAtMinResidual(options.lr), //                        y_k* with the least ‖R_α‖
    Solver.hypergradient(reverse()) //                                   backpropagate y_0 → y_k*
  )
