import fs from 'node:fs/promises'
import { API_TYPES_FILE, generateApiTypes } from './api-types.js'

/** Writes the console's API types from the routes as they are now (see api-types.ts). */
const text = await generateApiTypes()
await fs.writeFile(API_TYPES_FILE, text)
process.stdout.write(`wrote ${API_TYPES_FILE} (${text.split('\n').length} lines)\n`)
