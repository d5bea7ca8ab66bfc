/**
 * `Stream.iterate` computes a_{n+1} as soon as it emits a_n. Here a step is an LL step, a VJP or a
 * Hessian-vector product, so the next element is computed only when it is pulled: `take(n)` then
 * costs exactly n − 1 steps, and cost counters equal the work done. With `release`, an element's
 * resources are freed once the next one exists (O(1) memory when no one keeps old elements).
 */
import { Effect, Stream } from "effect"

export const iterateLazily = <A>(
  initial: () => A,
  next: (a: A) => A,
  release?: (previous: A) => void
): Stream.Stream<A> =>
  Stream.unfold(undefined as { readonly a: A } | undefined, (previous) =>
    Effect.sync(() => {
      const a = previous === undefined ? initial() : next(previous.a)
      if (previous !== undefined) release?.(previous.a)
      return [a, { a }] as const
    }))
