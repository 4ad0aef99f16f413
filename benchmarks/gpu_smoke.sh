#!/usr/bin/env bash
# The CUDA paths on a GPU machine, as one script: the device-parametrized tests (cpu and cuda),
# classes/channels on CUDA with and without --amp, and batched channels against one at a time.
#   bash benchmarks/gpu_smoke.sh [OUTDIR]      (needs torch with CUDA, mlxtend, and the repo root as cwd)
set -uo pipefail
out=${1:-/tmp/introspect-gpu}
mkdir -p "$out"
[ -e introspect_cli ] || ln -s cli introspect_cli
export PYTHONPATH=$PWD:${PYTHONPATH:-} INTROSPECT_CACHE=$out/cache
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
python3 -m pytest -q -p no:cacheprovider -x tests/test_engine.py tests/test_structure.py tests/test_hooks.py \
  tests/test_objectives.py tests/test_params.py tests/test_transforms.py tests/test_outputs.py tests/test_digests.py \
  -k "not channels_conv1" 2>&1 | tail -4
for amp in "" "--amp"; do
  /usr/bin/time -f "classes --device cuda $amp: %e s" python3 -m introspect_cli.main classes --device cuda $amp \
    --out "$out/classes$amp" --quiet
  /usr/bin/time -f "channels resnet18 layer3 (256 ch, 128 px, 64 steps) --device cuda $amp: %e s" \
    python3 -m introspect_cli.main channels --model torchvision:resnet18 --layer layer3.1.conv2 --size 128 \
    --steps 64 --dataset none --device cuda $amp --out "$out/resnet$amp" --quiet
done
python3 benchmarks/channels_speed.py --device cuda --steps 64 2>&1 | tail -6
