#!/usr/bin/env bash
# The CUDA paths on a GPU machine, as one script: the device-parametrized tests' modules (cpu and cuda),
# classes/channels on CUDA with and without --amp, and batched channels against one at a time. About 3 minutes
# on an H200; benchmarks/gpu_check.sh (issue 24's bars) comes first when device time is short.
#   bash benchmarks/gpu_smoke.sh [OUTDIR]              (the repository's root need not be the working folder)
#   bash benchmarks/gpu_smoke.sh --rehearse [OUTDIR]   (the same on the CPU, short; or GPU_CHECK_DEVICE=cpu)
# Needs python3 with torch and pytest, nothing installed: the checkout goes on PYTHONPATH with a link
# introspect_cli -> cli. Writes OUTDIR/gpu_smoke.log (OUTDIR: else $OUT, else /tmp/introspect-gpu); run folders
# go to a scratch folder. A failing step is reported and the rest go on; the exit status counts the failures.
set -uo pipefail
REHEARSE=0
[ "${1:-}" = "--rehearse" ] && { REHEARSE=1; shift; }
[ "${GPU_CHECK_DEVICE:-cuda}" = cpu ] && REHEARSE=1
out=$(mkdir -p "${1:-${OUT:-/tmp/introspect-gpu}}" && cd "${1:-${OUT:-/tmp/introspect-gpu}}" && pwd)
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ "$REHEARSE" = 1 ] && [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && PY=.venv/bin/python
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
exec > >(tee "$out/gpu_smoke.log") 2>&1
TEE=$!
mkdir -p "$scratch/links" && ln -s "$PWD/cli" "$scratch/links/introspect_cli"
path=$PWD:$scratch/links
if [ "$REHEARSE" = 1 ]; then  # the GPU machine has no mlxtend: any step reaching for it fails here too
  mkdir -p "$scratch/block/mlxtend"
  echo 'raise ImportError("mlxtend is blocked: the GPU machine has none")' > "$scratch/block/mlxtend/__init__.py"
  path=$scratch/block:$path
fi
export PYTHONPATH=$path${PYTHONPATH:+:$PYTHONPATH} INTROSPECT_CACHE=$scratch/cache PYTHONUNBUFFERED=1
if [ "$REHEARSE" = 1 ]; then DEV=cpu STEPS=4 SIZE=32 CLASSES=(--steps 8); else DEV=cuda STEPS=64 SIZE=128 CLASSES=(); fi
FAILED=0

step() {  # step NAME LIMIT COMMAND...: run it under a timeout, say how it went and how long it took
  local name=$1 limit=$2 start=$SECONDS rc
  shift 2
  echo "== $name"
  timeout -k 10 "$limit" "$@"
  rc=$?
  [ "$rc" = 0 ] || FAILED=$((FAILED + 1))
  echo "== $name: $([ "$rc" = 0 ] && echo OK || echo "FAILED (exit $rc)") in $((SECONDS - start)) s"
}

command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
tests=(tests/lib/test_engine.py tests/system/test_structure.py tests/lib/test_hooks.py tests/lib/test_objectives.py
       tests/lib/test_params.py tests/lib/test_transforms.py tests/lib/test_outputs.py tests/system/test_reference_runs.py)
if ! "$PY" -c "import hypothesis" 2> /dev/null; then  # not on every GPU machine: leave out the modules needing it
  mapfile -t tests < <(grep -L "import hypothesis\|from hypothesis" "${tests[@]}")
  echo "hypothesis is not installed: its modules left out"
fi
step "tests (cpu and $DEV)" 300 "$PY" -m pytest -q -p no:cacheprovider "${tests[@]}"
for amp in "" "--amp"; do
  step "classes --device $DEV $amp" 120 "$PY" -m introspect_cli.main classes --device $DEV $amp \
    ${CLASSES[@]+"${CLASSES[@]}"} --out "$scratch/classes$amp" --quiet
  step "channels resnet18 layer3.1.conv2 (256 ch, $SIZE px, $STEPS steps) --device $DEV $amp" 180 \
    "$PY" -m introspect_cli.main channels --model torchvision:resnet18 --layer layer3.1.conv2 --size $SIZE \
    --steps $STEPS --dataset none --device $DEV $amp --out "$scratch/resnet$amp" --quiet
done
step "batched channels against one at a time" 180 "$PY" benchmarks/channels_speed.py --device $DEV --steps $STEPS \
  --repeats $((REHEARSE ? 1 : 3))
echo "gpu_smoke.sh: $FAILED step(s) failed, ${SECONDS} s in all"
exec > /dev/null 2>&1
wait "$TEE"
exit "$FAILED"
