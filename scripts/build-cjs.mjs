// Builds the CommonJS twin of the ESM output, for `require('prevail')` on Node 20 (whose
// floor, 20.6, has no require(esm)). Run after `tsc -p tsconfig.json` (which type-checks
// lib/ and writes dist/*.js and dist/*.d.ts):
//
//   dist/cjs/**/*.js  each lib/**/*.ts transpiled again as CommonJS (TypeScript's own
//                     transpiler, module NodeNext on a .cts name: dynamic import() stays
//                     import(), so loading user ESM modules keeps working)
//   dist/cjs/**/*.d.ts the ESM build's declarations, read as CommonJS declarations here
//   dist/cjs/package.json  {"type": "commonjs"}
//
// The one ESM-only construct in lib/ is `import.meta.url` (lib/engine/native.ts finds the package
// root from it, to load the addon, and makes a require from it). Here it becomes the URL
// of the same module's ESM twin, dist/<rel>.js, so every path computed from it is the same
// in both builds; `const require = createRequire(import.meta.url)` is dropped (CommonJS has
// its own require).
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const lib = join(root, 'lib');
const dist = join(root, 'dist');
const out = join(dist, 'cjs');

// import.meta.url of lib/<rel>.ts in the CommonJS build: the URL of dist/<rel>.js, found
// from dist/cjs/<rel>.js's own __dirname.
const importMetaUrl = (rel) => {
  const twin = relative(dirname(join(out, `${rel}.js`)), join(dist, `${rel}.js`));
  return `require('node:url').pathToFileURL(require('node:path').join(__dirname, ${JSON.stringify(twin)})).href`;
};

// lib/**/*.ts, as paths relative to lib/ without the extension.
function sources(dir, prefix = '') {
  const found = [];
  for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) =>
    a.name.localeCompare(b.name),
  )) {
    if (entry.isDirectory())
      found.push(...sources(join(dir, entry.name), `${prefix}${entry.name}/`));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts'))
      found.push(`${prefix}${entry.name.slice(0, -3)}`);
  }
  return found;
}

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
writeFileSync(join(out, 'package.json'), '{\n  "type": "commonjs"\n}\n');

const compilerOptions = {
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  target: ts.ScriptTarget.ES2022,
  esModuleInterop: true,
};

let files = 0;
for (const rel of sources(lib)) {
  const name = `${rel}.ts`;
  let source = readFileSync(join(lib, name), 'utf8');
  if (/\bimport\.meta\b(?!\.url\b)/.test(source)) {
    throw new Error(
      `lib/${name}: import.meta other than import.meta.url has no CommonJS equivalent here`,
    );
  }
  // `const require = createRequire(import.meta.url)` would redeclare CommonJS's own
  // require (a SyntaxError there), which already does the same job.
  source = source.replace(
    /^const require = createRequire\(import\.meta\.url\);$/m,
    "/* CommonJS: the module's own require */",
  );
  source = source.replace(/\bimport\.meta\.url\b/g, importMetaUrl(rel));
  if (/^(?:const|let|var|function) require\b/m.test(source)) {
    throw new Error(`lib/${name}: declares its own top-level require, which CommonJS reserves`);
  }
  const result = ts.transpileModule(source, {
    compilerOptions,
    fileName: `${rel}.cts`,
    reportDiagnostics: true,
  });
  const errors = (result.diagnostics ?? []).filter(
    (d) => d.category === ts.DiagnosticCategory.Error,
  );
  if (errors.length) {
    throw new Error(
      `lib/${name}: ${errors.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n')).join('; ')}`,
    );
  }
  mkdirSync(dirname(join(out, rel)), { recursive: true });
  writeFileSync(join(out, `${rel}.js`), result.outputText);
  // The declarations are the ESM build's: the same API; inside dist/cjs they are CommonJS.
  copyFileSync(join(dist, `${rel}.d.ts`), join(out, `${rel}.d.ts`));
  files++;
}
console.log(`build-cjs: ${files} modules → dist/cjs/`);
