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
# Everything goes into one JSON file: gpu-check.json (or $OUT), rewritten after every step, so that a check
# stopped or killed part way keeps what it measured. STEPS=2 etc. shortens the timed runs; BENCH=0 skips steps
# 4 and 5 (a quick look at the driver and the replay). When no hardware adapter is found, step 4 is skipped
# unless BENCH=1 (step 5 still runs: PyTorch measures the GPU whether or not Dawn found it). The whole check
# keeps within DEADLINE seconds (default 540; 0: none): each step gets at most the time left less 10 s, a
# step that would get under 5 s is skipped and said, and the steps go most telling first (the replay, the
# benches at 256 and 1024 beside PyTorch's, then the rest). Ctrl-C or a TERM stops the step running, writes
# the JSON and exits.
set -u
here=$(cd "$(dirname "$0")" && pwd)
# a relative OUT is of the folder the script was started in
out=${OUT:-$here/gpu-check.json}
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
say() { echo "gpu-check: $*" >&2; }
# where the JSON goes is checked before anything runs (a check that ran ten minutes and could not write it
# lost them all)
if [ -d "$out" ]; then
  say "OUT=$out is a folder: give a file name (e.g. $out/gpu-check.json)"
  exit 2
fi
# (a file there is written over; none is made now, lest a check that dies leave an empty one)
writable() {
  if [ -e "$out" ]; then [ -w "$out" ]; else : > "$out" 2>/dev/null && rm -f "$out"; fi
}
if { [ ! -d "$(dirname "$out")" ] && ! mkdir -p "$(dirname "$out")" 2>/dev/null; } || ! writable; then
  say "cannot write $out: give OUT a file in a folder you can write to"
  exit 2
fi
cd "$here"
steps=${STEPS:-5}
deadline=${DEADLINE:-540}
case "$deadline" in '' | *[!0-9]*) say "DEADLINE=$deadline: expected a whole number of seconds (0: none)"; exit 2 ;; esac
deadline=$((10#$deadline)) # 08 is eight, not a bad octal number
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Node, unpacked once: into node.tmp, kept as node only once it runs (a half-unpacked file is not taken for it)
if [ ! -x "$here/node" ]; then
  rm -f node.tmp
  if command -v xz >/dev/null 2>&1; then
    xz -dc node.xz > node.tmp || rm -f node.tmp
  elif command -v python3 >/dev/null 2>&1; then
    python3 -c "import lzma, shutil; shutil.copyfileobj(lzma.open('node.xz'), open('node.tmp', 'wb'))" || rm -f node.tmp
  else
    say "neither xz nor python3 here to unpack node.xz: install xz-utils, or unpack it elsewhere (xz -dk node.xz) and copy node here"
    exit 1
  fi
  if [ ! -s node.tmp ]; then
    rm -f node.tmp
    say "node.xz did not unpack (damaged in the copy?): copy the folder over again"
    exit 1
  fi
  chmod +x node.tmp
  # it runs, and is Node (an empty or foreign file could exit 0 too)
  if ! err=$(./node.tmp -p 1 2>&1) || [ "$err" != 1 ]; then
    rm -f node.tmp
    say "the bundled Node does not run here: $(printf '%s' "$err" | head -1)"
    exit 1
  fi
  mv node.tmp node
fi
export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# seconds a step may take: `want`, or what is left of the deadline less 10 s (0 or less: skip it)
cap() {
  if [ "$deadline" = 0 ]; then echo "$1"; return; fi
  local left=$((deadline - SECONDS - 10))
  if [ "$left" -lt "$1" ]; then echo "$left"; else echo "$1"; fi
}
# the step running in the background (its `timeout`), for the stop below
child=
current=
# OUT ERR LIMIT CMD...: CMD under `timeout`, in the background and waited for (a signal to the check is
# handled at once, the stop below ending it)
bg() {
  local o=$1 e=$2 t=$3 rc
  shift 3
  timeout -k 5 "$t" "$@" > "$o" 2> "$e" &
  child=$!
  wait "$child"
  rc=$?
  child=
  return "$rc"
}
# NAME WANT CMD...: CMD under `timeout` within the deadline, its stdout and stderr in $tmp/NAME.out/.err; a
# step that ends otherwise than well says how in its .err (the JSON keeps its tail). In the background, so
# that a signal to the check is handled at once, not when the step ends.
run_step() {
  local name=$1 lim rc
  lim=$(cap "$2")
  shift 2
  if [ "$lim" -lt 5 ]; then
    echo "the check's deadline (DEADLINE=$deadline s) came first" > "$tmp/$name.skipped"
    say "$name: skipped, the check's deadline (DEADLINE=$deadline s) came first"
    return 0
  fi
  : > "$tmp/$name.started"
  current=$name
  # the JSON shows it running: a check killed outright (SIGKILL) then says which step it was in
  assemble
  bg "$tmp/$name.out" "$tmp/$name.err" "$lim" "$@"
  rc=$?
  current=
  : > "$tmp/$name.done"
  case "$rc" in
    0) ;;
    124) echo "Error: timed out after $lim s (exit 124)" >> "$tmp/$name.err" ;;
    137) echo "Error: killed (exit 137: out of host memory, or after a timeout it did not stop at)" >> "$tmp/$name.err" ;;
    *) echo "Error: exit $rc" >> "$tmp/$name.err" ;;
  esac
  assemble
  return "$rc"
}
stop() {
  trap '' HUP INT TERM # a second signal does not cut the stop short
  if [ -n "$child" ]; then
    kill -TERM "$child" 2>/dev/null
    wait "$child" 2>/dev/null
  fi
  [ -n "$current" ] && echo "Error: stopped by a signal to the check" >> "$tmp/$current.err"
  echo "stopped by a signal during the check" > "$tmp/stopped"
  assemble
  say "stopped; what was measured is in $out"
  exit 130
}
trap stop HUP INT TERM

# gpu-check.json from what $tmp holds so far, written through a temporary name (a reader never sees half a
# file); a failure to write is said (the check goes on: a later step may write it)
assemble() {
  BENCHED="${bench:-}" ADAPTER="${adapter:-}" ICD="${icd:-}" CXX_RUNTIME="${cxx:-}" TMPD="$tmp" OUTF="$out" DEADLINE_S="$deadline" ELAPSED_S="$SECONDS" "$here/node" --input-type=module -e '
import { readFileSync, existsSync, writeFileSync, renameSync, readdirSync, lstatSync, rmSync } from "node:fs";
const d = process.env.TMPD;
const text = (f) => (existsSync(`${d}/${f}`) ? readFileSync(`${d}/${f}`, "utf8") : "");
const lines = (f) => text(f).split("\n").filter((l) => l.startsWith("{")).map((l) => { try { return JSON.parse(l); } catch { return l; } });
const errTail = (f) => text(f).trim().split("\n").filter((l) => l && !l.startsWith("Warning: maxDynamic") && !/^validation:|^ +(at|-) /.test(l)).slice(-3).join("\n") || undefined;
const skipped = (name) => text(`${name}.skipped`).trim() || undefined;
// a step: its last result line, else why it has none (skipped, its error, or not run yet)
const step = (name) => {
  const r = lines(`${name}.out`).at(-1);
  if (r && typeof r === "object") {
    delete r.config;
    const e = errTail(`${name}.err`);
    if (e && /^Error: /m.test(e)) r.exit = e.split("\n").filter((l) => l.startsWith("Error: ")).at(-1);
    return r;
  }
  if (skipped(name)) return { skipped: skipped(name) };
  if (!existsSync(`${d}/${name}.started`)) return { not_run: "not reached" };
  // the check was killed outright while it ran (no later write of this file)
  if (!existsSync(`${d}/${name}.done`) && !/^Error: /m.test(text(`${name}.err`))) return { running: "started, not finished when this file was written", stderr: errTail(`${name}.err`) };
  return { error: errTail(`${name}.err`) ?? "no output" };
};
const bench = {};
for (const b of ["256", "1024", "1024-per-param", "6144"]) {
  if (process.env.BENCHED === "0") bench[b] = { skipped: `${process.env.ADAPTER || "no hardware"} adapter, or BENCH=0` };
  else bench[b] = step(`bench-${b}`);
}
// PyTorch: the lines of each TF32 setting over its runs, and the error of a run that stopped
const torch = { tf32_off: [], tf32_on: [] };
if (skipped("torch")) torch.skipped = skipped("torch");
for (const f of readdirSync(d).filter((x) => /^torch-(off|on)-.*\.(out|err|skipped)$/.test(x)).sort()) {
  const [, tf32, batches, ext] = /^torch-(off|on)-(.*)\.(out|err|skipped)$/.exec(f);
  if (ext === "out") torch[`tf32_${tf32}`].push(...lines(f));
  else if (ext === "skipped") torch[`tf32_${tf32}_${batches}_skipped`] = text(f).trim();
  else {
    const e = errTail(f);
    if (e && /Error|Traceback|Killed/.test(e)) torch[`tf32_${tf32}_${batches}_error`] = e;
  }
}
const ratio = {};
const modelRatio = {};
for (const t of torch.tf32_off) {
  if (!(t?.images_per_s > 0)) continue; // a batch out of memory has no speed to compare
  const b = bench[t.batch];
  if (b?.images_per_s) ratio[t.batch] = Number((b.images_per_s / t.images_per_s).toFixed(3));
  if (b?.ms_per_step > b?.augment_ms) modelRatio[t.batch] = Number((t.ms_per_step / (b.ms_per_step - b.augment_ms)).toFixed(3));
}
const tried = text("tried.tsv").split("\n").filter(Boolean).map((l) => { const [file, doctor, stderr] = l.split("\t"); return { file, doctor: doctor?.trim() || undefined, stderr: stderr?.trim() || undefined }; });
const out = {
  when: new Date().toISOString(),
  elapsed_s: Number(process.env.ELAPSED_S),
  deadline_s: Number(process.env.DEADLINE_S) || null,
  stopped: text("stopped").trim() || undefined,
  vulkan_icd: process.env.ICD,
  vulkan_tried: tried,
  adapter: process.env.ADAPTER || undefined,
  cxx_runtime: process.env.CXX_RUNTIME,
  doctor: text("doctor.txt").trim().split("\n"),
  doctor_stderr: errTail("doctor.err"),
  replay: step("replay"),
  replay_per_parameter: step("replay-pp"),
  bench_webgpu: bench,
  pytorch_cuda: torch,
  webgpu_over_pytorch_tf32_off: ratio,
  webgpu_over_pytorch_tf32_off_without_augmentation: modelRatio,
  ratios:
    "the speed of moco3 on webgpu over that of PyTorch (TF32 off), by batch. PyTorch steps on random inputs already on the GPU; the steps of moco3 " +
    "include their two-view augmentation on the CPU (augment_ms), which the second ratio takes out. At batch 6144 moco3 runs micro-batches " +
    "of 1024 (train.micro_batch), PyTorch the whole batch at once, which may not fit the card (then its line says out of memory).",
};
// through a temporary name beside it, so that a reader never sees half a file; written in place where OUT is
// no plain file (a link, a device: renaming over it would replace the link, not write its target) or its
// folder takes no new file
const body = JSON.stringify(out, null, 1) + "\n";
const f = process.env.OUTF;
const plain = !existsSync(f) || lstatSync(f).isFile();
const tmpOut = `${f}.${process.pid}.tmp`;
try {
  if (!plain) throw new Error("not a plain file");
  writeFileSync(tmpOut, body);
  renameSync(tmpOut, f);
} catch {
  rmSync(tmpOut, { force: true });
  writeFileSync(f, body);
}
' && return 0
  say "could not write $out"
  return 1
}

# 1. a hardware adapter, with the default Vulkan driver or one of the usual NVIDIA ICD files
icd=default
# doctor's webgpu lines; `record` also keeps the whole output for gpu-check.json (step 2), `probe` keeps its
# lines and its stderr's last ones for `vulkan_tried` (why a driver did not load is said there)
probe() { # ICD file
  local t
  t=$(cap 60)
  [ "$t" -lt 5 ] && return 0
  bg "$tmp/probe.txt" "$tmp/probe.err" "$t" env VK_DRIVER_FILES="$1" VK_ICD_FILENAMES="$1" "$here/node" "$here/moco3.mjs" doctor
  local rc=$? said why
  case $rc in
    0) ;;
    124) echo "timed out after $t s (the driver hung?)" >> "$tmp/probe.err" ;;
    *) echo "doctor exit $rc" >> "$tmp/probe.err" ;;
  esac
  said=$(grep -A1 '^webgpu:' "$tmp/probe.txt")
  why=$(grep -v '^Warning: maxDynamic' "$tmp/probe.err" | tail -3)
  # one line a driver: file, doctor's webgpu lines, its stderr's last lines (tabs and line breaks as blanks)
  said=${said//[$'\t\n']/ }
  why=${why//[$'\t\n']/ }
  printf '%s\t%s\t%s\n' "$1" "$said" "$why" >> "$tmp/tried.tsv"
}
record() {
  local t rc
  t=$(cap 90)
  [ "$t" -lt 5 ] && return 0
  bg "$tmp/doctor.txt" "$tmp/doctor.err" "$t" "$here/node" "$here/moco3.mjs" doctor
  rc=$?
  [ "$rc" = 124 ] && echo "Error: doctor timed out after $t s (exit 124): the driver hung?" >> "$tmp/doctor.err"
  [ "$rc" != 0 ] && [ "$rc" != 124 ] && echo "Error: doctor exit $rc" >> "$tmp/doctor.err"
  return 0
}
# doctor's webgpu lines in FILE (none when it did not run)
webgpu_lines() { grep -A1 '^webgpu:' "$1" 2>/dev/null; }
record
line=$(webgpu_lines "$tmp/doctor.txt")
# Dawn needs GCC 12's C++ runtime (GLIBCXX_3.4.30) and glibc 2.34: with an older C++ runtime the bundled one
# is put first on the library path. That runtime needs the C library of the machine the bundle was built on
# (lib/compat/GLIBC): on an older one Node itself would not start with it, so it is taken back and said
cxx=system
if printf '%s' "$line" | grep -q 'GLIBCXX\|CXXABI'; then
  if err=$(LD_LIBRARY_PATH="$here/lib/compat:$LD_LIBRARY_PATH" "$here/node" -e 0 2>&1); then
    say "this machine's C++ runtime is older than Dawn's: using the bundled one (lib/compat/)"
    export LD_LIBRARY_PATH="$here/lib/compat:$LD_LIBRARY_PATH"
    cxx=bundled
    record
line=$(webgpu_lines "$tmp/doctor.txt")
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
    probe "$f"
    l=$(webgpu_lines "$tmp/probe.txt")
    say "tried $f: $(printf '%s' "$l" | head -1)"
    if printf '%s' "$l" | grep -q ': hardware'; then
      export VK_DRIVER_FILES="$f" VK_ICD_FILENAMES="$f"
      icd=$f
      record
line=$(webgpu_lines "$tmp/doctor.txt")
      break
    fi
  done
fi
say "Vulkan driver: $icd"
[ -n "$line" ] && say "$line"
# the adapter Dawn found: hardware, software (lavapipe, SwiftShader), or none
adapter=none
if printf '%s' "$line" | grep -q ': hardware'; then adapter=hardware; elif printf '%s' "$line" | grep -q 'software'; then adapter=software; fi
assemble

# 2.-5. the replay, the benches and PyTorch's, most telling first: a check cut short by its deadline keeps
# the replay and the batch-256 and 1024 comparisons (doctor's output, with the driver found, is in
# $tmp/doctor.txt from step 1)
moco3_step() { # NAME WANT ARGS...: moco3 on the bundled Node
  local name=$1 want=$2
  shift 2
  run_step "$name" "$want" "$here/node" "$here/moco3.mjs" "$@"
}
say 'replay: two steps on webgpu vs the CPU, optimizer updates packed per group'
MOCO3_WEBGPU_PACK=1 moco3_step replay 180 doctor --replay
bench_step() { # NAME WANT ARGS...
  local name=$1 want=$2
  shift 2
  say "bench webgpu $name"
  moco3_step "bench-$name" "$want" bench --backend webgpu --preset gpu --steps "$steps" --warmup 2 --json "$@"
  # its result line (Dawn's validation messages may come on stdout too)
  grep '^{' "$tmp/bench-$name.out" | tail -1 >&2
}
# on a software adapter (no GPU driver found) one gpu-preset step takes minutes: the benches would run for
# hours and measure a CPU; BENCH=1 runs them anyway, BENCH=0 never
bench=${BENCH:-}
if [ -z "$bench" ]; then
  if [ "$adapter" = hardware ]; then
    bench=1
  else
    bench=0
    say "$adapter adapter: webgpu benches skipped (BENCH=1 runs them anyway)"
  fi
fi
# PyTorch on the same GPU, when there (numpy too: the script imports it)
torch=0
if [ "${BENCH:-1}" = 0 ]; then
  say 'BENCH=0: no timed runs'
elif command -v python3 >/dev/null 2>&1 && [ "$(cap 60)" -ge 5 ] && timeout -k 5 "$(cap 60)" python3 -c 'import numpy, torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  torch=1
else
  echo 'no PyTorch with CUDA (and numpy) in python3' > "$tmp/torch.skipped"
  say 'no PyTorch with CUDA (and numpy) in python3: skipping the PyTorch comparison'
fi
torch_step() { # TF32 (off|on) BATCHES WANT: appends the batches' lines to torch-TF32
  local tf32=$1 batches=$2 want=$3 flag=
  [ "$tf32" = on ] && flag=--tf32
  say "pytorch cuda, TF32 $tf32, batch $batches"
  run_step "torch-$tf32-$batches" "$want" python3 bench/native-torch.py --device cuda --model gpu --batch "$batches" --steps "$steps" --warmup 2 --json $flag
  cat "$tmp/torch-$tf32-$batches.out" >&2
}
[ "$bench" != 0 ] && bench_step 256 180 --batch 256
[ "$bench" != 0 ] && bench_step 1024 240 --batch 1024
[ "$torch" = 1 ] && torch_step off 256,1024 240
say 'replay with one optimizer dispatch per parameter'
MOCO3_WEBGPU_PACK=0 moco3_step replay-pp 180 doctor --replay
# the same with one optimizer dispatch per parameter instead of per group: which is faster on this GPU
[ "$bench" != 0 ] && MOCO3_WEBGPU_PACK=0 bench_step 1024-per-param 240 --batch 1024
[ "$bench" != 0 ] && bench_step 6144 360 --batch 6144 --set train.micro_batch=1024
[ "$torch" = 1 ] && torch_step off 6144 300
[ "$torch" = 1 ] && torch_step on 256,1024,6144 300
assemble || exit 1
say "wrote $out"
