/**
 * Schema fields for run settings: each has a default, a rule and a description, so a decoded config
 * is complete, bad values are rejected with the key's path, and `bilevel methods|tasks` and the
 * exported JSON Schema can list them.
 */
import { Effect, Schema } from "effect"

const withDefault = <S extends Schema.Top>(schema: S, value: S["Encoded"], description: string) =>
  Schema.withDecodingDefaultKey<S>(Effect.succeed(value))(schema.annotate({ description, default: value }) as S)

/** An integer ≥ 1 (step counts, dimensions). */
export const count = (value: number, description: string) =>
  withDefault(Schema.Int.check(Schema.isGreaterThan(0)), value, description)

/** An integer ≥ 0. */
export const natural = (value: number, description: string) =>
  withDefault(Schema.Int.check(Schema.isGreaterThanOrEqualTo(0)), value, description)

/** A finite number > 0 (step sizes). */
export const positive = (value: number, description: string) =>
  withDefault(Schema.Finite.check(Schema.isGreaterThan(0)), value, description)

/** A finite number in [0, 1] (rates, fractions). */
export const rate = (value: number, description: string) =>
  withDefault(Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 1 })), value, description)

/** A finite number ≥ 0 (weights, spreads). */
export const nonNegative = (value: number, description: string) =>
  withDefault(Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0)), value, description)

/** A finite number in [minimum, maximum] (a point inside a box). */
export const between = (minimum: number, maximum: number, value: number, description: string) =>
  withDefault(Schema.Finite.check(Schema.isBetween({ minimum, maximum })), value, description)

/** Any finite number. */
export const finite = (value: number, description: string) => withDefault(Schema.Finite, value, description)

/** One of a few names. */
export const choice = <const L extends ReadonlyArray<string>>(options: L, value: L[number], description: string) =>
  withDefault(Schema.Literals(options), value, description)

/** true or false. */
export const flag = (value: boolean, description: string) => withDefault(Schema.Boolean, value, description)

/** A flag that has one value for this method: any other is refused with `reason`. */
export const fixedFlag = <V extends boolean>(value: V, description: string, reason: string) =>
  withDefault(Schema.Literal(value).annotate({ message: reason }), value, description)

/**
 * A rule between settings, which no field's own schema (nor its JSON Schema) can state: each listed
 * setting at most its bound's value (a minibatch within its split). Refused at the setting's path,
 * naming the bound, so raising either is the remedy.
 */
export const atMost = <S extends Record<string, unknown>>(bounds: ReadonlyArray<readonly [keyof S & string, keyof S & string]>) =>
  Schema.makeFilter((s: S) =>
    bounds.flatMap(([key, bound]) =>
      (s[key] as number) > (s[bound] as number) ? [{ path: [key], issue: `${key} ${s[key]} exceeds ${bound} ${s[bound]}` }] : []
    )
  )
