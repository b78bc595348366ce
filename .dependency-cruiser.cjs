/**
 * One-way dependencies between the top-level folders (`npm run lint`, so CI, runs it).
 *
 * `dependency-layers.json` lists the folders in layers, from the bottom up. A folder may import only folders of a lower
 * layer: never one of its own layer, never one above. That rules out folder-level cycles as
 * well. The README's architecture diagram is checked against this list
 * (`test/architecture.test.ts`), and that file lists the layers so the test reads the same list.
 *
 * Tests (`*.test.ts`), test fixtures (`*.fixture.ts`), `test/` and `bench/` may import anything:
 * they exercise capabilities together. Production code may not import them. Files at the root are
 * the tools' configuration.
 */
const { layers: LAYERS } = require('./dependency-layers.json')

const TEST_CODE = '\\.(test|fixture)\\.ts$|^(test|bench)/'
// The tools' own configuration files at the root (vitest.config.ts, eslint.config.js).
const ROOT_FILES = '^[^/]+$'
const folders = LAYERS.flat()
const under = (names) => `^(${names.join('|')})/`

/** For each folder, what it may import: every folder of a lower layer. */
function allowedImports() {
  const allowed = {}
  LAYERS.forEach((layer, i) => {
    for (const f of layer) allowed[f] = LAYERS.slice(0, i).flat()
  })
  return allowed
}

const layerRules = Object.entries(allowedImports()).map(([folder, below]) => ({
  name: `layers-${folder}`,
  severity: 'error',
  comment: below.length ? `${folder}/ may import only ${below.join(', ')} (the layers below it)` : `${folder}/ imports no other folder`,
  from: { path: `^${folder}/`, pathNot: TEST_CODE },
  to: { path: under(folders.filter((f) => f !== folder && !below.includes(f))) },
}))

module.exports = {
  forbidden: [
    ...layerRules,
    {
      name: 'unlayered-folder',
      severity: 'error',
      comment: 'every folder of production code has a place in dependency-layers.json',
      from: { pathNot: `${under(folders)}|${TEST_CODE}|${ROOT_FILES}` },
      to: { pathNot: '^node_modules/', dependencyTypesNot: ['core'] },
    },
    {
      name: 'test-code-in-production',
      severity: 'error',
      comment: 'production code does not import tests, fixtures, test/ or bench/',
      from: { pathNot: `${TEST_CODE}|${ROOT_FILES}` },
      to: { path: TEST_CODE },
    },
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'no import cycles between files either (a cycle through type-only imports has no effect at run time)',
      from: { pathNot: TEST_CODE },
      to: { circular: true, viaOnly: { dependencyTypesNot: ['type-only'] } },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(node_modules|dist|console)/|(^|/)\\.' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.mjs', '.cjs', '.json'] },
  },
}
