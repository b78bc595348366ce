import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vite'

const here = path.dirname(fileURLToPath(import.meta.url))

// The server serves the build at /console/ (server/console.routes.ts); `vite` alone (dev) proxies
// the API to a server on :8080 so the same relative /v1 calls work.
export default defineConfig({
  root: here,
  base: '/console/',
  build: { outDir: path.join(here, 'dist'), emptyOutDir: true, chunkSizeWarningLimit: 1200 },
  server: { proxy: { '/v1': 'http://localhost:8080' } },
})
