#!/usr/bin/env node
// Runs the compiled CLI (`npm run build:server` writes dist/, and `npm install` runs the build);
// in a checkout that was never built, the TypeScript sources through tsx's loader instead.
import fs from 'node:fs'
import { URL } from 'node:url'

const compiled = new URL('../dist/cli/main.js', import.meta.url)
if (fs.existsSync(compiled)) {
  await import(compiled.href)
} else {
  const { register } = await import('tsx/esm/api')
  register()
  await import('../cli/main.ts')
}
