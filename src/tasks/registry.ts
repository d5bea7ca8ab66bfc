/** Every built-in task, by name. */
import { fewShot } from "./fewShot.ts"
import { hyperCleaning } from "./hyperCleaning.ts"
import { logregHpo } from "./logregHpo.ts"
import { quadratic } from "./quadratic.ts"
import type { Task } from "./Task.ts"
import { toyLlc } from "./toyLlc.ts"
import { toyNonconvex } from "./toyNonconvex.ts"

export const tasks: ReadonlyArray<Task> = [toyNonconvex, quadratic, toyLlc, hyperCleaning, logregHpo, fewShot]
