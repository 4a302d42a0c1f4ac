// The dashboard is served by the CityOS API: index.html at "/" and "/twin/", assets under
// /twin/assets/. The build goes straight into the Python package (cityos/twin/static).
import { defineConfig, type Plugin } from "vite";

// Fully offline: the libraries carry a few absolute URLs (documentation links in error
// messages, MapLibre's attribution, loaders.gl's default worker CDN). Every one is rewritten
// to a path on this server that does not exist, so nothing can ever reach another host;
// only the XML namespace identifiers (never fetched) stay. tests/twin/test_dashboard.py
// fails if the built bundle names any other host.
const EXTERNAL = /\bhttps?:\/\/(?!www\.w3\.org\/(?:2000\/svg|1999\/xhtml|1999\/xlink|XML\/1998\/namespace|2000\/xmlns\/)\b)[A-Za-z0-9.-]+(?::\d+)?/g;

function offline(): Plugin {
  return {
    name: "cityos-offline",
    enforce: "post",
    renderChunk(code) {
      return { code: code.replace(EXTERNAL, "/twin/offline"), map: null };
    },
    generateBundle(_opts, bundle) {
      for (const f of Object.values(bundle)) {
        if (f.type === "asset" && typeof f.source === "string") f.source = f.source.replace(EXTERNAL, "/twin/offline");
      }
    },
  };
}

export default defineConfig({
  base: "/twin/",
  plugins: [offline()],
  worker: { format: "es", plugins: () => [offline()] },
  build: {
    outDir: "../src/cityos/twin/static",
    emptyOutDir: true,
    assetsDir: "assets",
    chunkSizeWarningLimit: 4000,
    modulePreload: { polyfill: false },
    sourcemap: false,
  },
  esbuild: { legalComments: "none" },
});
