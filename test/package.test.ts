/**
 * effect-bilevel as a package a user installs: `npm pack`, installed from the tarball into a fresh
 * project (dependencies from npm's cache), then the tutorial's code (docs/your-own-problem.md, which
 * quotes examples/ridge.ts and examples/solveRidge.ts verbatim) run against it by package name —
 * as plain JavaScript, and as TypeScript compiled by tsc against the package's .d.ts — and the
 * installed `bilevel` binary (compiled, no sources) on the tutorial's task module. The hypergradients
 * it prints must agree with finite differences: tfjs's gradients are registered from dist/ too.
 */
import { execFileSync, spawnSync } from "node:child_process"
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { assert, beforeAll, describe, it } from "vitest"
import { scratchDir } from "./support/scratch.ts"

const root = path.join(import.meta.dirname, "..")
const examples = path.join(root, "examples")
const bin = (name: string) => path.join(root, "node_modules", ".bin", name)
const project = scratchDir("package")

const run = (command: string, args: ReadonlyArray<string>, cwd = project) => {
  const result = spawnSync(command, args, { cwd, encoding: "utf8" })
  assert.strictEqual(result.status, 0, `${command} ${args.join(" ")}:\n${result.stderr}\n${result.stdout}`)
  return result.stdout
}

/** The tutorial's printout: each method's relative error against finite differences, and the run's end. */
const assertTutorialOutput = (stdout: string) => {
  const errors = [...stdout.matchAll(/(\S+) hypergradient vs finite-difference: relative error (\S+)/g)]
  assert.deepStrictEqual(errors.map((m) => m[1]), ["rhg", "iaptt-gm"], stdout)
  for (const [, , error] of errors) assert.isBelow(Number(error), 1e-3, stdout)
  const end = /validation error (\S+) → (\S+)/.exec(stdout)
  assert.isNotNull(end, stdout)
  assert.isBelow(Number(end![2]), Number(end![1]), "the validation error went down")
}

describe("the tutorial", () => {
  it("quotes examples/ridge.ts and examples/solveRidge.ts verbatim, in well under 50 lines", () => {
    const doc = readFileSync(path.join(root, "docs", "your-own-problem.md"), "utf8")
    const code = ["ridge.ts", "solveRidge.ts"].map((name) => readFileSync(path.join(examples, name), "utf8"))
    for (const file of code) assert.include(doc, "```ts\n" + file + "```")
    assert.isBelow(code.join("").trim().split("\n").length, 46)
  })
})

describe("the packed package", { timeout: 240_000 }, () => {
  beforeAll(() => {
    const [packed] = JSON.parse(run("npm", ["pack", "--json", "--pack-destination", project], root)) as Array<{ filename: string }>
    writeFileSync(path.join(project, "package.json"), JSON.stringify({ name: "user-project", private: true, type: "module" }))
    run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--ignore-scripts", `./${packed!.filename}`])
  }, 240_000)

  it("ships compiled ESM with declarations and no sources", () => {
    const installed = path.join(project, "node_modules", "effect-bilevel")
    const manifest = JSON.parse(readFileSync(path.join(installed, "package.json"), "utf8"))
    assert.strictEqual(manifest.exports["."].default, "./dist/index.js")
    for (const file of ["dist/index.js", "dist/index.d.ts", "dist/runtime/tfjsGradients.js"]) {
      assert.isTrue(spawnSync("test", ["-f", path.join(installed, file)]).status === 0, file)
    }
    assert.isFalse(spawnSync("test", ["-e", path.join(installed, "src")]).status === 0, "no src/")
  })

  it("runs the tutorial's code as plain JavaScript, importing the package by name", () => {
    const js = path.join(project, "js")
    mkdirSync(js)
    for (const name of ["ridge", "solveRidge"]) {
      writeFileSync(path.join(js, `${name}.js`), execFileSync(bin("esbuild"), [path.join(examples, `${name}.ts`), "--log-level=warning"]))
    }
    assertTutorialOutput(run("node", [path.join(js, "solveRidge.js")]))
  })

  it("runs the tutorial's code as TypeScript, type-checked against the package's declarations", () => {
    const ts = path.join(project, "ts")
    mkdirSync(ts)
    for (const name of ["ridge.ts", "solveRidge.ts"]) copyFileSync(path.join(examples, name), path.join(ts, name))
    // Declarations that failed to resolve would type everything `any` and let anything compile.
    writeFileSync(
      path.join(ts, "typed.ts"),
      "import { defineTask, Solver } from \"effect-bilevel\"\n" +
        "// @ts-expect-error a task definition is not a number\nexport const task: number = defineTask\n" +
        "// @ts-expect-error take needs a step count\nexport const take = Solver.take(\"forty\")\n"
    )
    writeFileSync(path.join(project, "tsconfig.json"), JSON.stringify({
      compilerOptions: {
        target: "ES2022",
        module: "NodeNext",
        moduleResolution: "NodeNext",
        strict: true,
        skipLibCheck: true,
        types: [],
        rootDir: "ts",
        outDir: "out"
      },
      include: ["ts"]
    }))
    run(bin("tsc"), ["-p", "tsconfig.json"])
    assertTutorialOutput(run("node", [path.join(project, "out", "solveRidge.js")]))
  })

  it("its bilevel binary runs the tutorial's TypeScript task module from the compiled CLI", () => {
    // In the user's project, where "effect-bilevel" and tfjs resolve to the installed copies.
    copyFileSync(path.join(examples, "ridge.ts"), path.join(project, "ridge.ts"))
    const result = JSON.parse(run("node", [path.join("node_modules", ".bin", "bilevel"), "gradcheck", "./ridge.ts", "-m", "rhg", "--json"]))
    assert.strictEqual(result.task, "ridge")
    assert.isBelow(result.relError, 1e-3)
  })
})
