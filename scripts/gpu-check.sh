#!/usr/bin/env bash
# moco3's GPU check, run inside the folder `npm run bundle:gpu` makes (build/moco3-gpu/), on a Linux x64
# machine with a GPU and no Node, npm or internet. Steps, each optional to the next:
#   1. the Vulkan driver: the default one, else the NVIDIA ICD files tried in turn (says which it used); the
#      bundled C++ runtime where the machine's is too old for Dawn
#   2. moco3 doctor (the adapter: vendor, architecture, driver, hardware or software, limits)
#   3. moco3 doctor --replay: two training steps on webgpu and on the CPU, their largest differences, with the
#      optimizer updates packed per group (`replay`) and per parameter (`replay_per_parameter`)
#   4. moco3 bench --backend webgpu --preset gpu: batch 256, 1024 (also with per-parameter optimizer
#      dispatches, MOCO3_WEBGPU_PACK=0), and 6144 in micro-batches of 1024
#   5. with PyTorch and CUDA in python3: the same step in PyTorch on the same GPU, fp32 with TF32 off, then on
# Everything goes into one JSON file: gpu-check.json (or $OUT). STEPS=2 etc. shortens the timed runs; BENCH=0
# skips steps 4 and 5 (a quick look at the driver and the replay). When only a software adapter is found,
# step 4 is skipped unless BENCH=1 (step 5 still runs: PyTorch measures the GPU whether or not Dawn found it).
set -u
here=$(cd "$(dirname "$0")" && pwd)
# a relative OUT is of the folder the script was started in
out=${OUT:-$here/gpu-check.json}
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
cd "$here"
steps=${STEPS:-5}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
say() { echo "gpu-check: $*" >&2; }

# Node, unpacked once: into node.tmp, kept as node only once it runs (a half-unpacked file is not taken for it)
if [ ! -x "$here/node" ]; then
  rm -f node.tmp
  if command -v xz >/dev/null 2>&1; then
    xz -dc node.xz > node.tmp
  elif command -v python3 >/dev/null 2>&1; then
    python3 -c "import lzma, shutil; shutil.copyfileobj(lzma.open('node.xz'), open('node.tmp', 'wb'))"
  else
    say "neither xz nor python3 here to unpack node.xz: install xz-utils, or unpack it elsewhere (xz -dk node.xz) and copy node here"
    exit 1
  fi
  chmod +x node.tmp
  if ! err=$(./node.tmp -e 0 2>&1); then
    rm -f node.tmp
    say "the bundled Node does not run here: $(printf '%s' "$err" | head -1)"
    exit 1
  fi
  mv node.tmp node
fi
export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
moco3() { "$here/node" "$here/moco3.mjs" "$@"; }

# 1. a hardware adapter, with the default Vulkan driver or one of the usual NVIDIA ICD files
icd=default
# doctor's webgpu lines; `record` also keeps the whole output for gpu-check.json (step 2), `probe` does not
probe() { moco3 doctor 2>/dev/null | grep -A1 '^webgpu:'; }
record() {
  moco3 doctor > "$tmp/doctor.txt" 2> "$tmp/doctor.err"
  grep -A1 '^webgpu:' "$tmp/doctor.txt"
}
line=$(record)
# Dawn needs GCC 12's C++ runtime (GLIBCXX_3.4.30) and glibc 2.34: with an older C++ runtime the bundled one
# is put first on the library path. That runtime needs the C library of the machine the bundle was built on
# (lib/compat/GLIBC): on an older one Node itself would not start with it, so it is taken back and said
cxx=system
if printf '%s' "$line" | grep -q 'GLIBCXX\|CXXABI'; then
  if err=$(LD_LIBRARY_PATH="$here/lib/compat:$LD_LIBRARY_PATH" "$here/node" -e 0 2>&1); then
    say "this machine's C++ runtime is older than Dawn's: using the bundled one (lib/compat/)"
    export LD_LIBRARY_PATH="$here/lib/compat:$LD_LIBRARY_PATH"
    cxx=bundled
    line=$(record)
  else
    say "this machine's C++ runtime is older than Dawn's, and the bundled one needs a newer C library ($(cat "$here/lib/compat/GLIBC" 2>/dev/null || echo 'see lib/compat')) than this machine's: webgpu cannot run here ($(printf '%s' "$err" | grep -o "GLIBC_[0-9.]*' not found" | head -1))"
    cxx=unusable
  fi
fi
if printf '%s' "$line" | grep -q 'GLIBC_2'; then
  say "this machine's C library is older than glibc 2.34, which Dawn needs: webgpu cannot run here"
fi
if ! printf '%s' "$line" | grep -q ': hardware'; then
  icd=none
  # the ICD files name the driver library (libGLX_nvidia.so.0) without a folder: where the container keeps
  # the driver in /usr/local/nvidia, let the loader find it there
  for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
    [ -d "$d" ] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"
  done
  for f in ${VK_ICD_CANDIDATES:-} /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
    /etc/vulkan/icd.d/nvidia_icd.json /usr/local/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.x86_64.json \
    /usr/local/nvidia/vulkan/icd.d/nvidia_icd.json; do
    [ -f "$f" ] || continue
    l=$(VK_DRIVER_FILES="$f" VK_ICD_FILENAMES="$f" probe)
    say "tried $f: $(printf '%s' "$l" | head -1)"
    if printf '%s' "$l" | grep -q ': hardware'; then
      export VK_DRIVER_FILES="$f" VK_ICD_FILENAMES="$f"
      icd=$f
      line=$(record)
      break
    fi
  done
fi
say "Vulkan driver: $icd"
[ -n "$line" ] && say "$line"

# 2.-4. moco3 (doctor's output, with the driver found, is in $tmp/doctor.txt from step 1)
say 'replay: two steps on webgpu vs the CPU, optimizer updates packed per group, then per parameter'
MOCO3_WEBGPU_PACK=1 moco3 doctor --replay > "$tmp/replay.json" 2> "$tmp/replay.err"
MOCO3_WEBGPU_PACK=0 moco3 doctor --replay > "$tmp/replay-pp.json" 2> "$tmp/replay-pp.err"
run_bench() { # name, extra args
  local name=$1
  shift
  say "bench webgpu $name"
  timeout 3600 "$here/node" "$here/moco3.mjs" bench --backend webgpu --preset gpu --steps "$steps" --warmup 2 --json "$@" > "$tmp/bench-$name.json" 2> "$tmp/bench-$name.err"
  tail -1 "$tmp/bench-$name.json" >&2
}
# on a software adapter (no GPU driver found) one gpu-preset step takes minutes: the benches would run for
# hours and measure a CPU; BENCH=1 runs them anyway, BENCH=0 never
bench=${BENCH:-}
if [ -z "$bench" ]; then
  if printf '%s' "$line" | grep -q ': hardware'; then bench=1; else bench=0; say 'software adapter: webgpu benches skipped (BENCH=1 runs them anyway)'; fi
fi
if [ "$bench" != 0 ]; then
  run_bench 256 --batch 256
  run_bench 1024 --batch 1024
  # the same with one optimizer dispatch per parameter instead of per group: which is faster on this GPU
  MOCO3_WEBGPU_PACK=0 run_bench 1024-per-param --batch 1024
  run_bench 6144 --batch 6144 --set train.micro_batch=1024
fi

# 5. PyTorch on the same GPU, when there
if [ "${BENCH:-1}" = 0 ]; then
  say 'BENCH=0: no timed runs'
elif command -v python3 >/dev/null 2>&1 && python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  for tf32 in off on; do
    flag=
    [ "$tf32" = on ] && flag=--tf32
    say "pytorch cuda, TF32 $tf32"
    # a run that ends otherwise than well (timed out, killed for memory) says so in its .err, which the JSON keeps
    timeout 3600 python3 bench/native-torch.py --device cuda --model gpu --batch 256,1024,6144 --steps "$steps" --warmup 2 --json $flag \
      > "$tmp/torch-$tf32.json" 2> "$tmp/torch-$tf32.err" \
      || echo "Error: exit $? (124: timed out after 3600 s; 137: killed, e.g. out of host memory)" >> "$tmp/torch-$tf32.err"
    cat "$tmp/torch-$tf32.json" >&2
  done
else
  say 'no PyTorch with CUDA in python3: skipping the PyTorch comparison'
fi

# one JSON file, assembled by the bundled Node
BENCHED="$bench" ICD="$icd" CXX_RUNTIME="$cxx" TMPD="$tmp" OUTF="$out" "$here/node" --input-type=module -e '
import { readFileSync, existsSync, writeFileSync } from "node:fs";
const d = process.env.TMPD;
const text = (f) => (existsSync(`${d}/${f}`) ? readFileSync(`${d}/${f}`, "utf8") : "");
const lines = (f) => text(f).split("\n").filter((l) => l.startsWith("{")).map((l) => { try { return JSON.parse(l); } catch { return l; } });
const errTail = (f) => text(f).trim().split("\n").filter((l) => !l.startsWith("Warning: maxDynamic")).slice(-3).join("\n") || undefined;
const bench = {};
for (const b of ["256", "1024", "1024-per-param", "6144"]) {
  const r = lines(`bench-${b}.json`).at(-1);
  if (r && typeof r === "object") delete r.config;
  if (process.env.BENCHED === "0") bench[b] = { skipped: "software adapter or BENCH=0" };
  else bench[b] = r ?? { error: errTail(`bench-${b}.err`) ?? "no output" };
}
const torch = { tf32_off: lines("torch-off.json"), tf32_on: lines("torch-on.json") };
// a PyTorch run that stopped (its error, not a batch left out without a word)
for (const [k, f] of [["tf32_off_error", "torch-off.err"], ["tf32_on_error", "torch-on.err"]]) {
  const e = errTail(f);
  if (e && /Error|Traceback|Killed/.test(e)) torch[k] = e;
}
const ratio = {};
const modelRatio = {};
for (const t of torch.tf32_off) {
  if (!(t?.images_per_s > 0)) continue; // a batch out of memory has no speed to compare
  const b = bench[t.batch];
  if (b?.images_per_s) ratio[t.batch] = Number((b.images_per_s / t.images_per_s).toFixed(3));
  if (b?.ms_per_step > b?.augment_ms) modelRatio[t.batch] = Number((t.ms_per_step / (b.ms_per_step - b.augment_ms)).toFixed(3));
}
const out = {
  when: new Date().toISOString(),
  vulkan_icd: process.env.ICD,
  cxx_runtime: process.env.CXX_RUNTIME,
  doctor: text("doctor.txt").trim().split("\n"),
  replay: lines("replay.json").at(-1) ?? { error: errTail("replay.err") ?? "no output" },
  replay_per_parameter: lines("replay-pp.json").at(-1) ?? { error: errTail("replay-pp.err") ?? "no output" },
  bench_webgpu: bench,
  pytorch_cuda: torch,
  webgpu_over_pytorch_tf32_off: ratio,
  webgpu_over_pytorch_tf32_off_without_augmentation: modelRatio,
  ratios:
    "the speed of moco3 on webgpu over that of PyTorch (TF32 off), by batch. PyTorch steps on random inputs already on the GPU; the steps of moco3 " +
    "include their two-view augmentation on the CPU (augment_ms), which the second ratio takes out. At batch 6144 moco3 runs micro-batches " +
    "of 1024 (train.micro_batch), PyTorch the whole batch at once, which may not fit the card (then its line says out of memory).",
};
writeFileSync(process.env.OUTF, JSON.stringify(out, null, 1) + "\n");
'
if [ ! -s "$out" ]; then
  say "could not write $out"
  exit 1
fi
say "wrote $out"
