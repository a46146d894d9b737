/**
 * Builds the console (web/src) into web/dist, which the server serves at `/`. `ARCNET_API`
 * (e.g. http://127.0.0.1:8080) makes `vite` and `vite preview` proxy the API and the feed to a
 * running server, so the app can be worked on before or without the server's static serving.
 */
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

const api = process.env['ARCNET_API'];
const proxy = api === undefined ? undefined : {
  '/api': { target: api, changeOrigin: true },
  '/stats': { target: api, changeOrigin: true },
  '/telemetry': { target: api, changeOrigin: true, ws: true },
};

export default defineConfig(({ command }) => {
  // A build is always a production build: run from vitest (NODE_ENV=test), Vite and the React plugin
  // would otherwise bundle React's development build and dev JSX, several times slower and larger.
  if (command === 'build') process.env['NODE_ENV'] = 'production';
  return {
    root: import.meta.dirname,
    // Relative asset URLs: the same build works at `/` or behind a path prefix (routing is by hash).
    base: './',
    plugins: [react()],
    build: {
      outDir: 'dist',
      emptyOutDir: true,
      assetsDir: 'assets',
      sourcemap: false,
      rolldownOptions: {
        output: {
          codeSplitting: {
            groups: [
              // The basemap (TopoJSON and the code that projects it) changes least: its own cached chunk.
              { name: 'map-data', test: /node_modules[\\/](us-atlas|topojson-client|d3-geo|d3-array)[\\/]/ },
              { name: 'react', test: /node_modules[\\/](react|react-dom|scheduler)[\\/]/ },
            ],
          },
        },
      },
    },
    server: { ...(proxy ? { proxy } : {}) },
    preview: { ...(proxy ? { proxy } : {}) },
  };
});
