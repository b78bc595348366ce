#!/usr/bin/env node
// Runs the TypeScript CLI through tsx's loader, so the installed command and `npm start` run the
// same sources with no separate build step.
import { register } from 'tsx/esm/api'

register()
await import('../cli/main.ts')
