#!/usr/bin/env node
// `npm run bundle:gpu`: one folder (build/moco3-gpu/, at most 60 MiB) that checks moco3's webgpu backend on
// a Linux x64 GPU machine with no Node, no npm and no internet: this Node binary (xz-compressed), moco3
// bundled into one file (esbuild), Dawn (dawn.node from the `webgpu` package), the Vulkan loader
// (libvulkan.so.1), the C++ runtime Dawn runs with here (lib/compat/), bench/native-torch.py with
// tools/torch_reference.py, and scripts/gpu-check.sh. Run `sh gpu-check.sh` in the folder there; it writes
// gpu-check.json.
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// `--out DIR` writes the folder elsewhere (the test of the bundle does)
const outAt = process.argv.indexOf('--out');
const out = outAt > 0 && process.argv[outAt + 1] ? resolve(process.argv[outAt + 1]) : join(root, 'build', 'moco3-gpu');
const require = createRequire(join(root, 'package.json'));
const LIMIT = 60 * 2 ** 20;

function fail(msg) {
  process.stderr.write(`bundle:gpu: ${msg}\n`);
  process.exit(2);
}

if (process.platform !== 'linux' || process.arch !== 'x64') fail(`builds the linux-x64 folder, and this is ${process.platform}-${process.arch}`);
let esbuild;
try {
  esbuild = await import('esbuild');
} catch {
  fail('esbuild is not installed (npm install)');
}
const webgpuDir = dirname(require.resolve('webgpu/package.json'));
const dawn = join(webgpuDir, 'dist', 'linux-x64', 'dawn.node');
if (!existsSync(dawn)) fail(`${dawn} is missing (npm install webgpu)`);
const vulkan = ['/usr/lib/x86_64-linux-gnu/libvulkan.so.1', '/usr/lib64/libvulkan.so.1', '/usr/lib/libvulkan.so.1'].find((p) => existsSync(p));
if (!vulkan) fail('libvulkan.so.1 not found (apt-get install libvulkan1)');

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

// moco3 in one ES module; packages with native parts the check does not use stay outside (absent there:
// their dynamic imports fail and moco3 goes without them), webgpu is loaded from the folder's node_modules
const stub = (name) => ({
  name: `stub-${name}`,
  setup(b) {
    b.onResolve({ filter: new RegExp(`^${name.replace(/[/.]/g, '\\$&')}$`) }, () => ({ path: name, namespace: 'stub' }));
    b.onLoad({ filter: /.*/, namespace: 'stub' }, (a) => ({
      contents: `const no = () => { throw new Error('${a.path} is not part of the GPU check bundle'); };\nexport default new Proxy(no, { get: no, apply: no });\nexport const Resvg = no;\n`,
      loader: 'js',
    }));
  },
});
await esbuild.build({
  stdin: {
    contents: "import { main } from './src/cli/main.ts';\nprocess.exitCode = await main(process.argv.slice(2), { processEntry: true });\n",
    resolveDir: root,
    sourcefile: 'moco3-gpu-entry.ts',
    loader: 'ts',
  },
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  outfile: join(out, 'moco3.mjs'),
  external: ['webgpu', '@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-backend-wasm', 'tsx', 'tsx/*'],
  plugins: [stub('sharp'), stub('@resvg/resvg-js')],
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  // the tfjs packages declare `sideEffects`, but their backends register themselves on import
  ignoreAnnotations: true,
  // doctor says what the bundle leaves out as such, not how to build it from a checkout the bundle has not
  define: { 'process.env.MOCO3_GPU_BUNDLE': '"1"' },
  minify: true,
  legalComments: 'none',
  logLevel: 'warning',
});

// the webgpu package as it is (index.js loads dist/linux-x64/dawn.node), and the versions doctor reports
const nm = join(out, 'node_modules');
mkdirSync(join(nm, 'webgpu', 'dist', 'linux-x64'), { recursive: true });
for (const f of ['package.json', 'index.js']) copyFileSync(join(webgpuDir, f), join(nm, 'webgpu', f));
copyFileSync(dawn, join(nm, 'webgpu', 'dist', 'linux-x64', 'dawn.node'));
for (const pkg of ['@tensorflow/tfjs-core', '@tensorflow/tfjs-backend-cpu', '@tensorflow/tfjs-backend-webgpu']) {
  const { name, version } = JSON.parse(readFileSync(require.resolve(`${pkg}/package.json`), 'utf8'));
  mkdirSync(join(nm, pkg), { recursive: true });
  writeFileSync(join(nm, pkg, 'package.json'), `${JSON.stringify({ name, version, private: true })}\n`);
}
const own = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
writeFileSync(join(out, 'package.json'), `${JSON.stringify({ name: 'moco3-gpu-check', version: own.version, type: 'module', private: true })}\n`);

mkdirSync(join(out, 'lib', 'compat'), { recursive: true });
copyFileSync(vulkan, join(out, 'lib', 'libvulkan.so.1'));
// the C++ runtime dawn.node is linked against here (it needs GLIBCXX_3.4.30, GCC 12's): gpu-check.sh puts it
// on the library path only where the machine's own is older and Dawn does not load without it
const ldd = execFileSync('ldd', [dawn], { encoding: 'utf8' });
for (const lib of ['libstdc++.so.6', 'libgcc_s.so.1']) {
  const at = new RegExp(`${lib.replace(/[.+]/g, '\\$&')} => (\\S+)`).exec(ldd)?.[1];
  if (!at) fail(`ldd ${dawn} names no ${lib}`);
  copyFileSync(at, join(out, 'lib', 'compat', lib));
}
// that runtime needs this machine's C library (or a newer one): said by gpu-check.sh where the machine's is older
const glibc = process.report.getReport().header.glibcVersionRuntime;
writeFileSync(join(out, 'lib', 'compat', 'GLIBC'), `glibc ${glibc ?? '(unknown)'} or newer\n`);
mkdirSync(join(out, 'bench'));
mkdirSync(join(out, 'tools'));
copyFileSync(join(root, 'bench', 'native-torch.py'), join(out, 'bench', 'native-torch.py'));
copyFileSync(join(root, 'tools', 'torch_reference.py'), join(out, 'tools', 'torch_reference.py'));
copyFileSync(join(root, 'scripts', 'gpu-check.sh'), join(out, 'gpu-check.sh'));
chmodSync(join(out, 'gpu-check.sh'), 0o755);

// this machine's Node (the same major version moco3 is built and tested with), xz-compressed
try {
  execFileSync('sh', ['-c', 'command -v xz'], { stdio: 'ignore' });
} catch {
  fail('xz not found: install it (apt-get install xz-utils) to compress the bundled Node');
}
execFileSync('sh', ['-c', `xz -6 -T2 -c "${process.execPath}" > "${join(out, 'node.xz')}"`], { stdio: 'inherit' });
writeFileSync(join(out, 'NODE_VERSION'), `${process.version}\n`);

const size = (p) => (statSync(p).isDirectory() ? readdirSync(p).reduce((s, f) => s + size(join(p, f)), 0) : statSync(p).size);
const total = size(out);
process.stdout.write(`bundle:gpu: ${out}: ${(total / 2 ** 20).toFixed(1)} MiB (node.xz ${(statSync(join(out, 'node.xz')).size / 2 ** 20).toFixed(1)}, dawn.node ${(statSync(dawn).size / 2 ** 20).toFixed(1)}, moco3.mjs ${(statSync(join(out, 'moco3.mjs')).size / 2 ** 20).toFixed(1)})\n`);
if (total > LIMIT) fail(`${(total / 2 ** 20).toFixed(1)} MiB is over the 60 MiB limit`);
