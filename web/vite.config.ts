import { defineConfig } from "vite";

// The built files in dist/ are committed and embedded into the server binary (see README.md).
export default defineConfig({
  base: "/",
  build: {
    // noVNC uses top-level await.
    target: "es2022",
    outDir: "dist",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    // One bundle is small enough; noVNC is most of it.
    chunkSizeWarningLimit: 1024,
  },
  server: {
    // `npm run dev` against a local `streamspace up`.
    proxy: {
      "/api": { target: "http://127.0.0.1:8080", ws: true },
    },
  },
});
