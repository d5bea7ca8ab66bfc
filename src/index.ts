/**
 * effect-bilevel: gradient-based bilevel optimization as Effect streams on TensorFlow.js.
 *
 *     min_x F(x, y)   subject to   y ∈ argmin_y f(x, y)
 *
 * A problem is data (`BilevelProblem`); a task wraps one with its settings and initial point
 * (`defineTask`); a solver is LL dynamics piped through `Solver` combinators and a hypergradient
 * strategy, and the named methods are presets of them. `run` and `gradcheck` are Effect programs that
 * need a `Backend` layer; `optimize` and `check` are their promise-returning counterparts.
 * docs/your-own-problem.md walks through a whole task; docs/design.md explains the architecture.
 */

// The problem, its settings and its randomness
export type { BilevelProblem, Draw, Episode, Purpose, Residuals, Vector } from "./domain/Problem.ts"
export * as Random from "./domain/Random.ts"
export * as Blocks from "./domain/Blocks.ts"
export { between, choice, count, finite, natural, nonNegative, positive, rate } from "./domain/settings.ts"
export { type RandomSource, Rng } from "./domain/Rng.ts"
export { dot, norm, readScalar, readVector, tensorScope, tidy } from "./domain/tensors.ts"
export type { Cost } from "./domain/Cost.ts"
export {
  BackendUnavailable,
  DatasetError,
  Diverged,
  HypergradientFailed,
  InvalidConfig,
  InvalidSolver,
  ReplayMismatch,
  RunRecordError,
  TaskModuleError,
  UnknownName,
  UnsupportedOp
} from "./domain/errors.ts"

// Lower-level dynamics and their iterate streams
export {
  bda,
  bdaDirection,
  type Direction,
  type Dynamics,
  fista,
  fromUpdate,
  gradientDescent,
  lowerGradient,
  nesterovMomentum,
  type UpdateRule,
  upperGradientY
} from "./dynamics/Dynamics.ts"
export { constant, decreasing, polynomial, type Schedule, type StepSize } from "./dynamics/schedules.ts"
export { type Iterate, iterateY, LowerLevel } from "./dynamics/Iterate.ts"
export * as Iterates from "./dynamics/iterates.ts"
export { at, last, minResidual, pessimistic, type Selection } from "./dynamics/selection.ts"

// Solvers: the combinators, hypergradient strategies, presets and the UL loop
export * as Solver from "./solvers/Solver.ts"
export type { HypergradientStrategy, InitGradient } from "./solvers/Hypergradient.ts"
export { encodeBy } from "./solvers/metaBatch.ts"
export { reverse } from "./solvers/reverse.ts"
export { amortized, fixedPoint, implicit, type OptimalityCondition, stationarity } from "./solvers/implicit.ts"
export { conjugateGradient, type LinearSolver, neumann, stochasticFixedPoint, type WarmStartable } from "./solvers/linearSolvers.ts"
export { firstOrder } from "./solvers/firstOrder.ts"
export {
  aidFp,
  amigo,
  bdaMethod,
  firstOrderMethod,
  iaGm,
  iaGmA,
  iapttGm,
  type InnerSettings,
  ls,
  type Method,
  methods,
  ns,
  rhg,
  soba,
  tRhg
} from "./solvers/methods.ts"
export {
  adam,
  addDecayedWeights,
  chain,
  type GradientTransformation,
  nesterovSgd,
  partition,
  scale,
  scaleByAdam,
  sgd,
  trace
} from "./solvers/optimizers.ts"
export { initialState, type OuterState, type OuterStep, outerSteps, type UpperOptimizers } from "./solvers/outerLoop.ts"

// Tasks
export type { CommonSettings, LowerTraining, Task, TaskInstance } from "./tasks/Task.ts"
export { commonSettings, defineTask, type TaskDefinition, type TaskInstanceInput } from "./tasks/defineTask.ts"
export { tasks } from "./tasks/registry.ts"

// Running: backends, runs and their records, gradcheck, replay
export * as Backend from "./runtime/Backend.ts"
export { backendLayer } from "./runtime/autoBackend.ts"
export { resume, run, type RunRequest, type RunResult } from "./runtime/run.ts"
export * as RunRecord from "./runtime/RunRecord.ts"
export * as Arrays from "./runtime/arrays.ts"
export { checkSolver, gradcheck, type GradcheckRequest, type GradcheckResult } from "./runtime/gradcheck.ts"
export { replay, type ReplayReport } from "./runtime/replay.ts"
export { check, optimize, type Optimized, type PromiseOptions } from "./runtime/promise.ts"
