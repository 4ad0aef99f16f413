#!/usr/bin/env bash
# Issues 14 and 24 on a CUDA machine, as is, from the repository root: chunk speed with and without --amp,
# chunks planned against free GPU memory (and the peak memory of the largest chunk against that plan),
# one against two processes (two processes need two GPUs: nccl takes one device per local rank); then issue 24:
# introspect against the bare loop (benchmarks/floor.py), the calibrated memory model, writing 2048 channels.
set -euo pipefail
PY=${PYTHON:-python}
OUT=${OUT:-/tmp/introspect-gpu-check}
rm -rf "$OUT" && mkdir -p "$OUT"
export INTROSPECT_CACHE="$OUT/cache"
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA'; f, t = torch.cuda.mem_get_info(); print(torch.cuda.get_device_name(), f'{f / 2**30:.1f} of {t / 2**30:.1f} GiB free')"

echo "== image-steps/s against chunk size (resnet50 layer4.2.conv3, 224 px)"
$PY benchmarks/chunk_speed.py --model torchvision:resnet50 --layer layer4.2.conv3 --sizes 8,32,128 --device cuda
$PY benchmarks/chunk_speed.py --model torchvision:resnet50 --layer layer4.2.conv3 --sizes 8,32,128 --device cuda --amp

echo "== --layer all planned against free memory, with the time estimate"
$PY -m introspect_cli.main channels --model torchvision:resnet50 --layer all --steps 256 --dataset none --device cuda --amp --dry-run

echo "== peak memory of the largest layer's chunk against the plan's budget"
$PY - <<'PY'
import torch
from introspect.channels import CHANNELS_DEFAULTS, memory_budget, plan_channels, visualize_chunk
from introspect.engine import on_device
from introspect.layers import select_layers
from introspect.models import load_model
loaded = load_model("torchvision:resnet50")
layers = select_layers(loaded.model, loaded.spec.input_shape, "all")
budget = memory_budget("cuda")
plan = plan_channels(loaded.model, loaded.spec, layers, device="cuda", steps=1)
largest = max(plan.layers, key=lambda p: p.chunk * p.bytes_per_image)
with on_device(loaded.model, "cuda") as model:
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    for amp in (False, True):
        visualize_chunk(model, loaded.spec, largest, 0, CHANNELS_DEFAULTS.replace(steps=1, device="cuda", amp=amp))
peak = torch.cuda.max_memory_allocated() - base
print(f"{largest.layer}: chunk {largest.chunk}, peak {peak / 2**30:.2f} GiB, budget {budget / 2**30:.2f} GiB",
      "OK" if peak <= budget else "OVER BUDGET")
PY

echo "== one process against two"
ARGS="channels --model torchvision:resnet50 --layer layer1.0.conv1,layer4.2.conv3 --channels 0-63 --steps 32 --batch-size 16 --dataset none --device cuda"
time $PY -m introspect_cli.main $ARGS --quiet --out "$OUT/one"
if [ "$($PY -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
  time $PY -m torch.distributed.run --standalone --nproc-per-node 2 -m introspect_cli.main $ARGS --quiet --out "$OUT/two"
  cmp "$OUT/one/images.npz" "$OUT/two/images.npz" && echo "two processes: the same images.npz bytes"
else
  echo "one GPU: two processes skipped (nccl needs a device per process)"
fi

echo "== issue 24: introspect against the bare Adam loop (fp32 and bf16), same model, images, steps"
$PY benchmarks/floor.py classes --device cuda --amp --repeats 3
$PY benchmarks/floor.py channels --model torchvision:resnet50 --layer layer3.5.conv3 --size 224 --channels 64 \
    --steps 256 --device cuda --amp --repeats 3    # bar: >= 85% of the floor in fp32 and bf16

echo "== issue 24: the memory model calibrated on the first chunk's measured peak"
$PY - <<'PY'
import torch
from introspect.channels import (CHANNELS_DEFAULTS, calibrate_plan, memory_budget, measured_bytes_per_image,
                                 plan_channels, visualize_chunk)
from introspect.engine import on_device
from introspect.models import load_model
loaded = load_model("torchvision:resnet50")
config = CHANNELS_DEFAULTS.replace(steps=1, device="cuda", amp=True)
plan = plan_channels(loaded.model, loaded.spec, ["layer4.2.conv3", "layer1.0.conv1"], device="cuda", steps=1)
calibrated = calibrate_plan(loaded.model, loaded.spec, plan, config)
budget = memory_budget("cuda")
with on_device(loaded.model, "cuda") as model:
    for before, after in zip(plan.layers, calibrated.layers):
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        visualize_chunk(model, loaded.spec, after, 0, config)
        peak = torch.cuda.max_memory_allocated() - base
        planned = after.chunk * after.bytes_per_image
        print(f"{after.layer}: chunk {before.chunk} (estimate {before.bytes_per_image / 2**20:.1f} MiB/image) -> "
              f"{after.chunk} (measured {after.bytes_per_image / 2**20:.1f} MiB/image with headroom); first chunk "
              f"peak {peak / 2**30:.2f} GiB, planned {planned / 2**30:.2f} GiB ({planned / max(peak, 1):.2f}x, bar <= 2x), "
              f"budget {budget / 2**30:.1f} GiB", "OK" if peak <= budget and planned <= 2 * peak else "CHECK")
PY

echo "== issue 24: writing 2048 channels against their optimization (bar: <= 10%)"
$PY benchmarks/floor.py writing --model torchvision:resnet50 --layer layer4.2.conv3 --size 224 --steps 256 \
    --device cuda --amp

echo "== issue 24: host syncs per step on CUDA (torch.cuda.set_sync_debug_mode), 32 against 64 steps (bar: 2 more,"
echo "   the NaN check every 16 steps; tests/lib/test_engine.py::test_a_step_waits_for_no_gpu counts the same on the CPU)"
$PY - <<'PY'
import warnings

import torch

from introspect import CLASSES_DEFAULTS, load_model, visualize_classes
from introspect.channels import CHANNELS_DEFAULTS, visualize_channels


def syncs(run) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return sum("synchronizing" in str(w.message) for w in caught)


mnist, resnet = load_model("mnist"), load_model("torchvision:resnet50")
runs = {"classes (mnist)": lambda steps: visualize_classes(
            mnist.model, mnist.spec, config=CLASSES_DEFAULTS.replace(steps=steps, device="cuda")),
        "channels (resnet50 layer3.5.conv3, 8 channels)": lambda steps: visualize_channels(
            resnet.model, resnet.spec, "layer3.5.conv3", channels=list(range(8)),
            config=CHANNELS_DEFAULTS.replace(steps=steps, device="cuda"))}
for name, run in runs.items():
    run(2)  # warm-up
    counts = {steps: syncs(lambda: run(steps)) for steps in (32, 64)}
    extra = counts[64] - counts[32]
    print(f"{name}: {counts[32]} syncs at 32 steps, {counts[64]} at 64: {extra} for 32 more steps",
          "OK" if extra <= 2 else "CHECK")
PY
