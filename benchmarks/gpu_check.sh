#!/usr/bin/env bash
# Issue 24's GPU bars, then issue 14's GPU checks as time allows, on a CUDA machine as it is (nothing installed):
#   bash benchmarks/gpu_check.sh              # on the GPU machine: about 7.5 minutes on an H200, 8.5 at most
#   bash benchmarks/gpu_check.sh --rehearse   # every part on the CPU at tiny sizes (or GPU_CHECK_DEVICE=cpu)
# Needs python3 with torch, torchvision, numpy, matplotlib, rich and pillow; not mlxtend (no part reads a dataset;
# the rehearsal blocks it), not an installed introspect: the checkout goes on PYTHONPATH with a link
# introspect_cli -> cli (pyproject's package-dir). lucent: from .gpu-vendor when carried there (made by
# bash benchmarks/gpu_vendor.sh), else docs/measured.md's CPU figure is printed and the lucent bar stays open.
# Writes $OUT/gpu_check.log (everything printed) and $OUT/gpu_check_summary.txt (each part's status, time and bar
# lines); OUT defaults to /tmp/introspect-gpu-check. Each part runs under its own timeout within a total budget
# (GPU_CHECK_BUDGET seconds, default 510): a part that fails or hangs is reported and the rest go on; the extras
# start only when their whole limit fits. Exit status: the number of parts that failed (0: all ran).
#   PYTHON (default python3; the rehearsal: .venv/bin/python where there is one), GPU_CHECK_BUDGET, OUT
set -uo pipefail
OUT=${OUT:-/tmp/introspect-gpu-check}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
REHEARSE=0
[ "${1:-}" = "--rehearse" ] && REHEARSE=1
[ "${GPU_CHECK_DEVICE:-cuda}" = cpu ] && REHEARSE=1
PY=${PYTHON:-python3}
[ "$REHEARSE" = 1 ] && [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && PY=.venv/bin/python
LOG=$OUT/gpu_check.log
SUMMARY=$OUT/gpu_check_summary.txt
SCRATCH=$(mktemp -d)  # caches, links and run folders: $OUT keeps only the log and the summary
trap 'rm -rf "$SCRATCH"' EXIT
exec > >(tee "$LOG") 2>&1
TEE=$!

mkdir -p "$SCRATCH/links"
ln -s "$PWD/cli" "$SCRATCH/links/introspect_cli"
path=$PWD:$SCRATCH/links
if [ -d .gpu-vendor/site ]; then path=$path:$PWD/.gpu-vendor/site; fi
if [ "$REHEARSE" = 1 ]; then  # the GPU machine has no mlxtend: any part reaching for it fails here too
  mkdir -p "$SCRATCH/block/mlxtend"
  cat > "$SCRATCH/block/mlxtend/__init__.py" <<'PY'
import sys
with open(__file__.rsplit("/", 2)[0] + "/reached", "a") as log:  # the summary names whoever reached for it
    log.write(" ".join(sys.argv) + "\n")
raise ImportError("mlxtend is blocked: the GPU machine has none")
PY
  path=$SCRATCH/block:$path
fi
path=$path${PYTHONPATH:+:$PYTHONPATH}
if [ -d .gpu-vendor/stubs ]; then path=$path:$PWD/.gpu-vendor/stubs; fi
export PYTHONPATH=$path PYTHONUNBUFFERED=1 INTROSPECT_CACHE=$SCRATCH/cache MPLBACKEND=Agg TMPDIR=$SCRATCH

if [ "$REHEARSE" = 1 ]; then
  DEV=cpu MODEL=torchvision:resnet18 SIZE=32 REPEATS=1 CLASSES=(--steps 24)
  FLOOR=(--layer layer2.0.conv1 --channels 4 --steps 4) WRITE=(--layer layer1.0.conv1 --steps 2)
  MEMORY=(--layers layer4.1.conv2,layer1.0.conv1 --budget-gib 0.25) SYNCS=(--layer layer2.0.conv1 --channels 2)
  CHUNK=(--layer layer2.0.conv1 --sizes 2,4) DRY=(--layer layer1.0.conv1,layer4.1.conv2 --steps 4)
else
  DEV=cuda MODEL=torchvision:resnet50 SIZE=224 REPEATS=3 CLASSES=()
  FLOOR=(--layer layer3.5.conv3 --channels 64 --steps 256) WRITE=(--layer layer4.2.conv3 --steps 256)
  MEMORY=(--layers layer4.2.conv3,layer1.0.conv1) SYNCS=(--layer layer3.5.conv3 --channels 8)
  CHUNK=(--layer layer4.2.conv3 --sizes 8,32,128) DRY=(--layer all --steps 256)
fi
BUDGET=${GPU_CHECK_BUDGET:-510}
FAILED=0
: > "$SUMMARY"

# run_part KIND NAME LIMIT PATTERN COMMAND...: COMMAND under `timeout` (LIMIT, cut to the budget left for a core
# part; an extra runs only when LIMIT fits), its status, seconds and the lines matching PATTERN into the summary.
run_part() {
  local kind=$1 name=$2 limit=$3 pattern=$4 left status rc start
  shift 4
  left=$((BUDGET - SECONDS))
  if { [ "$kind" = core ] && [ "$left" -lt 20 ]; } || { [ "$kind" = extra ] && [ "$left" -lt "$limit" ]; }; then
    echo "== $name: skipped, ${left}s of the ${BUDGET}s budget left"
    printf '%-50s SKIPPED (budget: %ss left)\n' "$name" "$left" >> "$SUMMARY"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (at ${SECONDS}s, limit ${limit}s): $*"
  start=$SECONDS
  timeout -k 10 "$limit" "$@" 2>&1 | tee "$SCRATCH/part.out"
  rc=${PIPESTATUS[0]}
  case $rc in
    0) status=OK ;;
    124 | 137) status="TIMEOUT after ${limit}s"; FAILED=$((FAILED + 1)) ;;
    *) status="FAILED (exit $rc)"; FAILED=$((FAILED + 1)) ;;
  esac
  echo "== $name: $status in $((SECONDS - start))s"
  printf '%-50s %s, %ss\n' "$name" "$status" "$((SECONDS - start))" >> "$SUMMARY"
  grep -E -- "$pattern" "$SCRATCH/part.out" | cut -c1-220 | sed 's/^/    /' >> "$SUMMARY"
  [ "$rc" = 0 ] || tail -3 "$SCRATCH/part.out" | cut -c1-220 | sed 's/^/    | /' >> "$SUMMARY"
}

echo "gpu_check.sh on ${HOSTNAME:-?} at $(date -u '+%F %T') UTC, $([ "$REHEARSE" = 1 ] && echo "REHEARSAL on the CPU" || echo cuda); python: $PY; budget ${BUDGET}s"
echo "git: $(git log -1 --format='%h %s' 2>/dev/null | cut -c1-100)"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv,noheader
run_part core "environment" 90 "." "$PY" benchmarks/gpu_parts.py env --device $DEV
if grep -q "^environment .*FAILED\|^environment .*TIMEOUT" "$SUMMARY"; then
  echo "no usable $DEV here: the other parts are not run"
else
  run_part core "issue 24: host syncs per step" 150 "syncs|ran 32" \
    "$PY" benchmarks/gpu_parts.py syncs --device $DEV --model $MODEL --size $SIZE "${SYNCS[@]}"
  run_part core "issues 14, 24: memory model" 150 "GiB|layers planned|CUDA only" \
    "$PY" benchmarks/gpu_parts.py memory --device $DEV --model $MODEL --size $SIZE "${MEMORY[@]}"
  run_part core "issue 24: channels against the floor, lucent" 300 "of the floor|lucent|threads" \
    "$PY" benchmarks/floor.py channels --model $MODEL --size $SIZE "${FLOOR[@]}" --device $DEV --amp --repeats $REPEATS
  if grep -q "^lucent: not installed" "$SCRATCH/part.out" 2>/dev/null; then
    echo "lucent's figure from docs/measured.md (the CPU, resnet18 layer3; not the GPU bar, which stays open):"
    awk '/^#/ {p = 0} p && NF; /^### Against lucent.s speed/ {p = 1}' docs/measured.md | tee -a "$SUMMARY"
  fi
  run_part core "issue 24: writing against optimizing" 360 "writing / optimizing|^wall" \
    "$PY" benchmarks/floor.py writing --model $MODEL --size $SIZE "${WRITE[@]}" --device $DEV --amp
  run_part core "issue 24: classes against the floor" 150 "of the floor|threads" \
    "$PY" benchmarks/floor.py classes ${CLASSES[@]+"${CLASSES[@]}"} --device $DEV --amp --repeats $REPEATS
  run_part extra "extra: device-parametrized tests" 60 "passed|failed|error" \
    "$PY" -m pytest -q -p no:cacheprovider tests/lib/test_engine.py tests/lib/test_training.py \
    tests/lib/test_explore_maths.py -k "$DEV"
  run_part extra "extra, issue 14: the dry run's plan" 90 "[Ee]stimat|[Tt]otal|GiB" \
    "$PY" -m introspect_cli.main channels --model $MODEL --size $SIZE "${DRY[@]}" --dataset none --device $DEV \
    --amp --dry-run
  run_part extra "extra, issue 14: chunk speed (--amp)" 60 "chunk|^ *[0-9]+ " \
    "$PY" benchmarks/chunk_speed.py --model $MODEL --size $SIZE "${CHUNK[@]}" --device $DEV --amp
  if [ "$DEV" = cuda ] && [ "$("$PY" -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
    two=(channels --model $MODEL --layer layer1.0.conv1,layer4.2.conv3 --channels 0-63 --steps 32 --batch-size 16
         --dataset none --device cuda --quiet)
    run_part extra "extra, issue 14: one process" 90 "." "$PY" -m introspect_cli.main "${two[@]}" --out "$SCRATCH/one"
    run_part extra "extra, issue 14: two processes" 120 "." "$PY" -m torch.distributed.run --standalone \
      --nproc-per-node 2 -m introspect_cli.main "${two[@]}" --out "$SCRATCH/two"
    cmp "$SCRATCH/one/images.npz" "$SCRATCH/two/images.npz" && echo "    two processes: the same images.npz bytes" \
      | tee -a "$SUMMARY"
  fi
fi

if [ -s "$SCRATCH/block/reached" ]; then
  echo "mlxtend (none on the GPU machine) was reached for by: $(sort -u "$SCRATCH/block/reached" | tr '\n' ';')" \
    >> "$SUMMARY"
fi
{
  echo "bars: syncs <= 2 more for 32 more steps | memory: peak within the budget, planned 1-2x the calibrated peak"
  echo "      channels fp32 and bf16 >= 85% of the floor | --amp >= 2.5x lucent | writing / optimizing <= 10%"
  echo "total ${SECONDS}s of the ${BUDGET}s budget; ${FAILED} part(s) failed or timed out"
} >> "$SUMMARY"
echo "===== summary ($SUMMARY)"
cat "$SUMMARY"
exec > /dev/null 2>&1
wait "$TEE"  # the log complete before the machine takes $OUT
exit "$FAILED"
