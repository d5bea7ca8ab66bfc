/**
 * Reading the SVG figures the plots write, for the tests that check what they draw: parse (after
 * validating) with fast-xml-parser and find elements by tag and class.
 */
import { assert } from "@effect/vitest"
import { XMLParser, XMLValidator } from "fast-xml-parser"

/** `svg` as fast-xml-parser's object form, after asserting it is well-formed XML. */
export const parseSvg = (svg: string): unknown => {
  assert.strictEqual(XMLValidator.validate(svg), true)
  return new XMLParser({ ignoreAttributes: false, parseTagValue: false }).parse(svg) as unknown
}

/** Every element named `tag` under `node` in fast-xml-parser's object form. */
export const elements = (node: unknown, tag: string): Array<Record<string, unknown>> =>
  typeof node !== "object" || node === null
    ? []
    : Object.entries(node).flatMap(([key, child]) =>
      (Array.isArray(child) ? child : [child]).flatMap((c) => [
        ...(key === tag && typeof c === "object" ? [c as Record<string, unknown>] : []),
        ...elements(c, tag)
      ])
    )

/** The elements named `tag` under `node` whose class list holds `cls`. */
export const withClass = (node: unknown, tag: string, cls: string) =>
  elements(node, tag).filter((e) => String(e["@_class"]).split(" ").includes(cls))
