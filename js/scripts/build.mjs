// Build the client: dist/livestream.mjs (ES module, browsers and Node; `ws` stays an import),
// dist/livestream.js (browser IIFE exposing the global `Livestream`), and a copy of the IIFE at
// livestream/static/livestream.js (committed; tests/test_js_bundle.py checks it is current).
//
// The bundle's first line records a hash of the sources it was built from:
//   sha256 over, for each file of js/src/** and js/package-lock.json sorted by their path
//   relative to js/: path (UTF-8, '/' separators) + "\0" + file bytes + "\0".
// `node scripts/build.mjs --check` verifies the committed copy without building.
import { createHash } from "node:crypto";
import { readFileSync, readdirSync, statSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(dirname(fileURLToPath(import.meta.url))); // js/
const staticCopy = join(root, "..", "livestream", "static", "livestream.js");

function walk(dir) {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

export function sourceHash() {
  const files = [...walk(join(root, "src")), join(root, "package-lock.json")]
    .map((p) => relative(root, p).split(sep).join("/"))
    .sort();
  const h = createHash("sha256");
  for (const rel of files) {
    h.update(Buffer.from(rel, "utf8"));
    h.update(Buffer.from([0]));
    h.update(readFileSync(join(root, rel)));
    h.update(Buffer.from([0]));
  }
  return h.digest("hex");
}

const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const hash = sourceHash();
const banner = `/*! livestream-js ${pkg.version} | source-sha256: ${hash} | built from js/ by 'npm run build'; do not edit */`;

if (process.argv.includes("--check")) {
  let first = "";
  try {
    first = readFileSync(staticCopy, "utf8").split("\n", 1)[0];
  } catch {
    /* missing */
  }
  if (first !== banner) {
    console.error(`livestream/static/livestream.js is stale: run 'npm run build' in js/\n  have: ${first}\n  want: ${banner}`);
    process.exit(1);
  }
  console.log("livestream/static/livestream.js is current");
  process.exit(0);
}

const esbuild = await import("esbuild");
const common = {
  entryPoints: [join(root, "src", "index.ts")],
  bundle: true,
  target: "es2020",
  platform: "browser",
  banner: { js: banner },
  legalComments: "none",
  logLevel: "warning",
};
// ES module: `ws` is imported lazily, only where there is no global WebSocket (Node).
await esbuild.build({ ...common, format: "esm", outfile: join(root, "dist", "livestream.mjs"), external: ["ws"], sourcemap: true });
// Browser bundle: no `ws` (browsers have WebSocket).
const noWs = {
  name: "no-ws",
  setup(build) {
    build.onResolve({ filter: /^ws$/ }, () => ({ path: "ws", namespace: "no-ws" }));
    build.onLoad({ filter: /.*/, namespace: "no-ws" }, () => ({ contents: "export const WebSocket = undefined; export default undefined;", loader: "js" }));
  },
};
await esbuild.build({ ...common, format: "iife", globalName: "Livestream", minify: true, outfile: join(root, "dist", "livestream.js"), plugins: [noWs] });
mkdirSync(dirname(staticCopy), { recursive: true });
writeFileSync(staticCopy, readFileSync(join(root, "dist", "livestream.js")));
console.log(`built dist/livestream.mjs, dist/livestream.js and livestream/static/livestream.js (source-sha256 ${hash.slice(0, 12)}…)`);
