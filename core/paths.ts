import path from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * Where the project's files that are not code live (sql/, the tag and catalogue packs, the built
 * console, package.json). Run from source (`npm run dev`, tsx) this module is
 * <root>/core/paths.ts; compiled (`npm start`) it is <root>/dist/core/paths.js. Both resolve the
 * same root, so assets are read in place and never copied into dist/ (tsconfig.build.json).
 */
const here = path.dirname(fileURLToPath(import.meta.url))
const parent = path.dirname(here)
const compiled = path.basename(parent) === 'dist' && import.meta.url.endsWith('.js')

export const PROJECT_ROOT = compiled ? path.dirname(parent) : parent

/** A path below the project's root. */
export function projectPath(...parts: string[]): string {
  return path.join(PROJECT_ROOT, ...parts)
}
