/**
 * tfjs-core's kernel gradients. Its bundles register none (the `@tensorflow/tfjs` umbrella does it);
 * its unbundled `register_all_gradients` does, but its files are CommonJS-typed ESM with
 * extensionless imports: from the sources they load through tsx's CommonJS loader (the `bilevel`
 * binary in a checkout) or vite's resolver (vitest, where only `import()` works), so both are tried.
 * `npm run build` replaces this module in dist/ with a bundle of them (build/tfjsGradients.ts).
 */
import { createRequire } from "node:module"

const require = createRequire(import.meta.url)

export const registerTfjsGradients = async (): Promise<void> => {
  const module = "@tensorflow/tfjs-core/dist/register_all_gradients.js"
  try {
    require(module)
  } catch {
    await import(module)
  }
}
