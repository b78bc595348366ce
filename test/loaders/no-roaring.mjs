// Makes `import('roaring')` fail as it does where the native package could not be installed.
import { register } from 'node:module'

register('./no-roaring.hooks.mjs', import.meta.url)
