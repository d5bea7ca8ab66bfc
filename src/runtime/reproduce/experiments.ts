/**
 * Every experiment `bilevel reproduce` knows, by name. To add one, export an `Experiment` (built with
 * `define` from `Experiment.ts`) from its own module and append it here: the CLI gives it a subcommand.
 */
import type { Experiment } from "./Experiment.ts"
import { fewShotExperiment } from "./fewShot.ts"
import { fig1 } from "./fig1.ts"
import { fig2 } from "./fig2.ts"
import { fig3Toy } from "./fig3Toy.ts"
import { sidRates } from "./sidRates.ts"
import { table1 } from "./table1.ts"
import { table3 } from "./table3.ts"

export const experiments: ReadonlyArray<Experiment> = [fig1, table1, fig2, fig3Toy, table3, sidRates, fewShotExperiment]
