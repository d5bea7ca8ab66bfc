/**
 * What `npm run build` puts at dist/runtime/tfjsGradients.js instead of the compiled
 * src/runtime/tfjsGradients.ts: tfjs-core's gradient registrations bundled by esbuild (plain Node
 * cannot load tfjs-core's unbundled modules: CommonJS-typed files with ESM syntax and extensionless
 * imports), registered when this module is imported. The bundled copy of the ops they call registers
 * into tfjs's one global registry and engine, as the copy the source build loads does.
 */
import "@tensorflow/tfjs-core/dist/register_all_gradients.js"

export const registerTfjsGradients = async (): Promise<void> => {}
