/**
 * `Stream.iterate` computes a_{n+1} as soon as it emits a_n. Here a step is an LL step, a VJP or a
 * Hessian-vector product, so the next element is computed only when it is pulled: `take(n)` then
 * costs exactly n − 1 steps, and cost counters equal the work done.
 */
import { Effect, Stream } from "effect"

export const iterateLazily = <A>(initial: () => A, next: (a: A) => A): Stream.Stream<A> =>
  Stream.unfold(undefined as { readonly a: A } | undefined, (previous) =>
    Effect.sync(() => {
      const a = previous === undefined ? initial() : next(previous.a)
      return [a, { a }] as const
    }))
