"""introspect against the floor, in one process: a bare Adam loop on pixels (same model, images, steps, threads).

    python benchmarks/floor.py classes  [--model mnist] [--steps 144] [--device cpu|cuda] [--amp] [--repeats 3]
    python benchmarks/floor.py channels [--model mnist] [--layer conv2] [--channels 64] [--steps 256] [--size PX]
                                        [--device cpu|cuda] [--amp] [--repeats 3]
    python benchmarks/floor.py process  [--repeats 3] [--baseline DIR]   # whole `introspect classes` / the blog program
    python benchmarks/floor.py writing  [--model torchvision:resnet18] [--layer layer4.1.conv2] [--size 32] [--steps 2]
    python benchmarks/floor.py layers   [--model fashion-mnist] [--steps 1]   # --layer all / the deepest layer
    python benchmarks/floor.py parts    [--model mnist] [--repeats 3]   # what each part of a classes step costs

The floor: free pixels (B, C, H, W) in [0, 1] as the only parameter, the model's normalization, the forward stopped
at the layer by a hook, loss = minus the class logit (classes) or the channel's spatial mean (channels), Adam at
the same lr, no weight gradients; in bfloat16 autocast too with --amp. The blog program (benchmarks/blog_loop.py,
unchanged) and lucent (when installed) do the same work where they can. Runs alternate, medians of --repeats are
kept: on a shared machine compare the ratios, not the seconds. "paired" ratios are the median of each round's own
ratio (a run against the floor run beside it), steadier where the machine's speed drifts within the run.
"""
from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # blog_loop, and the checkout's introspect (installed or not)

from blog_loop import blog_loop  # noqa: E402
from introspect import CLASSES_DEFAULTS, load_model, visualize_classes  # noqa: E402
from introspect.capture import HookRegistry  # noqa: E402
from introspect.channel_runs import RunListener  # noqa: E402
from introspect.channels import CHANNELS_DEFAULTS, visualize_channels  # noqa: E402
from introspect.hooks import frozen  # noqa: E402
from introspect.models import MetaOverrides  # noqa: E402
from introspect.transforms import Normalize  # noqa: E402
from introspect_cli.memory import keep_freed_memory  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: The clock runs are timed with: wall time, or this process's CPU time (``--clock cpu``: steadier on a shared
#: machine, where other jobs take turns on the cores; use it with --threads 1, on the CPU).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter
#: classes: the shorter run whose time is subtracted to get the time per step alone.
SHORT = 16


def timed(fn, device: torch.device) -> float:
    sync(device)
    start = clock()
    fn()
    sync(device)
    return clock() - start


def floor_loop(model, spec, layer: str, targets: torch.Tensor, steps: int, lr: float, device: torch.device,
               amp: bool = False) -> torch.Tensor:
    """The bare loop: Adam on free pixels, the forward stopped at ``layer``, each image raising its own target
    (a class logit, or a channel's spatial mean). Returns the final pixels."""
    batch = len(targets)
    pixels = torch.rand(batch, *spec.image_shape, generator=torch.Generator().manual_seed(0)).to(device)
    pixels.requires_grad_(True)
    normalize = Normalize.of(spec, device)
    optimizer = torch.optim.Adam([pixels], lr=lr)
    rows, targets = torch.arange(batch, device=device), targets.to(device)
    with frozen(model), HookRegistry(model, [layer]) as hooks:
        for _ in range(steps):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                output = hooks.run(normalize(pixels))[layer]
            picked = output[rows, targets].float()
            loss = -picked.flatten(1).mean(1).sum() if picked.ndim > 1 else -picked.sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return pixels.detach()


def lucent_seconds(model, spec, layer: str, channels: list[int], steps: int) -> float | None:
    """Seconds of lucent's render_vis on the same channels (its default transforms, one batched objective); None
    where lucent is not installed."""
    try:
        from lucent.optvis import objectives, param, render, transform
    except ImportError:
        return None
    import copy

    name = layer.replace(".", "_")
    objective = sum(objectives.channel(name, c, batch=i) for i, c in enumerate(channels))
    channels_in, height, _ = spec.image_shape

    def run(net: torch.nn.Module, steps: int) -> None:
        render.render_vis(net, objective, lambda: param.image(height, channels=channels_in, batch=len(channels)),
                          transforms=transform.standard_transforms, thresholds=(steps,), fixed_image_size=height,
                          show_image=False, progress=False)

    run(copy.deepcopy(model), 2)  # warm-up, on a copy: lucent leaves a hook on every module of the model it gets
    start = time.perf_counter()
    run(model, steps)
    return time.perf_counter() - start


def compare(runs: dict, work: dict, repeats: int, device: torch.device, floor_key: str,
            short_of: str | None = None) -> dict[str, list[float]]:
    """Alternate the runs ``repeats`` times; print each one's median seconds, image-steps/s and ratio to the floor
    (a run whose name ends in ``short_of``: to the floor's run of that name), and the median of each round's own
    ratio (``paired``: each run against the floor run beside it, steadier on a machine whose speed drifts). Returns
    each run's seconds by round, by the names before any `` (defaults)``."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            times[name].append(timed(fn, device))
    medians = {name: statistics.median(t) for name, t in times.items()}
    floors = {name: work[name] / medians[name] for name in runs}
    for name in runs:
        reference = floor_key if "bf16" not in name else floor_key + " bf16"
        if short_of and name.endswith(short_of):
            reference = floor_key + short_of
        ratio = floors[name] / floors[reference] if reference in floors else float("nan")
        paired = (statistics.median(work[name] / t * times[reference][i] / work[reference]
                                    for i, t in enumerate(times[name])) if reference in floors else float("nan"))
        print(f"{name:<34} {medians[name]:8.3f} s {floors[name]:10.0f} image-steps/s  {ratio:6.1%} of the floor"
              f"  (paired {paired:6.1%})")
    return {name.removesuffix(" (defaults)"): seconds for name, seconds in times.items()}


def classes(args) -> None:
    """Whole calls (setup, steps, final scoring) against the floor, then per step: the same at SHORT steps, and the
    difference between the two step counts (the fixed costs cancel; the whole process is `floor.py process`)."""
    loaded = load_model(args.model)
    model, spec = loaded.model.to(args.device), loaded.spec
    device = torch.device(args.device)
    config = CLASSES_DEFAULTS.replace(device=str(device), steps=args.steps or CLASSES_DEFAULTS.steps)
    labels = list(range(spec.num_classes))
    targets = torch.tensor(labels)
    layer = spec.logits
    short = min(SHORT, config.steps - 1)
    runs = {"introspect classes (defaults)": lambda: visualize_classes(model, spec, config=config),
            "floor": lambda: floor_loop(model, spec, layer, targets, config.steps, config.lr, device),
            f"introspect classes, {short} steps": lambda: visualize_classes(model, spec,
                                                                            config=config.replace(steps=short)),
            f"floor, {short} steps": lambda: floor_loop(model, spec, layer, targets, short, config.lr, device)}
    work = {name: len(labels) * (short if name.endswith(f"{short} steps") else config.steps) for name in runs}
    if args.amp:
        runs["introspect classes --amp bf16"] = lambda: visualize_classes(model, spec, config=config.replace(amp=True))
        runs["floor bf16"] = lambda: floor_loop(model, spec, layer, targets, config.steps, config.lr, device, amp=True)
        work.update(dict.fromkeys(list(runs)[-2:], len(labels) * config.steps))
    if tuple(spec.image_shape) == (1, 28, 28) and device.type == "cpu":
        blog_steps = min(50, config.steps)  # the blog's 50, fewer for a short --steps
        runs["blog loop (one class at a time)"] = lambda: blog_loop(model, spec, labels, steps=blog_steps)
        work["blog loop (one class at a time)"] = len(labels) * blog_steps
    visualize_classes(model, spec, config=config.replace(steps=2))  # warm-up
    floor_loop(model, spec, layer, targets, 2, config.lr, device)
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads; {args.model}, {len(labels)} "
          f"classes x {config.steps} steps in one batch; medians of {args.repeats}, {args.clock} clock")
    times = compare(runs, work, args.repeats, device, "floor", short_of=f", {short} steps")
    extra = len(labels) * (config.steps - short)

    def per_step(name: str, rounds) -> float:
        """image-steps/s of the steps between the short run and the whole one (the fixed costs cancel)."""
        long, brief = (statistics.median(times[n][i] for i in rounds) for n in (name, f"{name}, {short} steps"))
        return extra / (long - brief) if long > brief else float("nan")

    everything = range(args.repeats)
    ours, floor = per_step("introspect classes", everything), per_step("floor", everything)
    paired = statistics.median(per_step("introspect classes", [i]) / per_step("floor", [i]) for i in everything)
    print(f"per step ({config.steps} - {short} steps): introspect {ours:.0f} image-steps/s, floor {floor:.0f}: "
          f"{ours / floor:6.1%} of the floor (paired {paired:6.1%})")


def parts(args) -> None:
    """Each part of a default classes step on its own, forward and backward, against the floor's whole step: where
    introspect's time beyond the floor goes (each part's time less that of a bare sum-and-backward)."""
    from introspect.classes import class_objective
    from introspect.objectives import INPUT

    loaded = load_model(args.model)
    model, spec = loaded.model, loaded.spec
    labels = list(range(spec.num_classes))
    built = CLASSES_DEFAULTS.parts(spec, labels)
    affine, normalize = built.transforms
    objective = class_objective(spec, "confidence", labels)
    pixels = torch.rand(len(labels), *spec.image_shape, requires_grad=True)
    logits = torch.randn(len(labels), spec.num_classes, requires_grad=True)
    optimizer = built.optimizer(list(built.param.parameters()))

    def adam() -> None:
        built.param.coefficients.grad = torch.zeros_like(built.param.coefficients) if hasattr(
            built.param, "coefficients") else None
        optimizer.step()

    pieces = {"sum and backward (subtracted from the rest)": lambda: (pixels * 1.0).sum().backward(),
              f"param ({built.param.name})": lambda: built.param().sum().backward(),
              "random affine": lambda: affine(pixels).sum().backward(),
              "normalization": lambda: normalize(pixels).sum().backward(),
              **{regularizer.name: (lambda r=regularizer: r({INPUT: pixels}).sum().backward())
                 for regularizer in built.regularizers},
              "class objective (confidence)": lambda: objective({spec.logits: logits}).sum().backward(),
              "Adam step (engine.Adam)": adam}
    steps = CLASSES_DEFAULTS.steps
    runs = {name: (lambda fn=fn: [fn() for _ in range(steps)]) for name, fn in pieces.items()}
    runs["floor (a whole step)"] = lambda: floor_loop(model, spec, spec.logits, torch.tensor(labels), steps,
                                                      CLASSES_DEFAULTS.lr, torch.device("cpu"))
    for fn in runs.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            times[name].append(timed(fn, torch.device("cpu")) / steps)
    per_step = {name: statistics.median(t) * 1e6 for name, t in times.items()}
    harness, floor_step = per_step["sum and backward (subtracted from the rest)"], per_step["floor (a whole step)"]
    print(f"torch {torch.__version__}, cpu, {torch.get_num_threads()} threads; {args.model}, {len(labels)} images, "
          f"classes defaults; medians of {args.repeats} x {steps} steps, {args.clock} clock; microseconds per step")
    extra = 0.0
    for name, micro in per_step.items():
        own = micro if name.startswith(("floor", "sum and", "Adam")) else micro - harness
        if not name.startswith(("floor", "sum and")):
            extra += own
        print(f"{name:<52} {own:8.0f} us  {own / floor_step:6.1%} of the floor's step")
    print(f"{'the parts together':<52} {extra:8.0f} us  {extra / floor_step:6.1%} of the floor's step")


def channels(args) -> None:
    meta = MetaOverrides(size=args.size) if args.size else None
    loaded = load_model(args.model, meta=meta) if meta else load_model(args.model)
    model, spec = loaded.model.to(args.device), loaded.spec
    device = torch.device(args.device)
    config = CHANNELS_DEFAULTS.replace(steps=args.steps, device=str(device))
    picked = list(range(args.channels))
    targets = torch.tensor(picked)
    batch = len(picked)
    runs = {"introspect channels (defaults)": lambda: visualize_channels(model, spec, args.layer, picked, config,
                                                                          batch_size=batch),
            "floor": lambda: floor_loop(model, spec, args.layer, targets, args.steps, config.lr, device)}
    if args.amp:
        runs["introspect channels --amp bf16"] = lambda: visualize_channels(
            model, spec, args.layer, picked, config.replace(amp=True), batch_size=batch)
        runs["floor bf16"] = lambda: floor_loop(model, spec, args.layer, targets, args.steps, config.lr, device, True)
    work = dict.fromkeys(runs, batch * args.steps)
    visualize_channels(model, spec, args.layer, picked, config.replace(steps=2), batch_size=batch)  # warm-up
    floor_loop(model, spec, args.layer, targets, 2, config.lr, device)
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads; {args.model} {args.layer}, "
          f"{batch} channels x {args.steps} steps at {spec.image_shape[-1]} px; medians of {args.repeats}, {args.clock} "
          "clock")
    medians = {name: statistics.median(t) for name, t in compare(runs, work, args.repeats, device, "floor").items()}
    lucent = lucent_seconds(model, spec, args.layer, picked, args.steps)
    if lucent is None:
        print("lucent: not installed (bash benchmarks/gpu_vendor.sh makes a copy gpu_check.sh puts on the path)")
        return
    print(f"lucent: {lucent:.2f} s, {batch * args.steps / lucent:.0f} image-steps/s; lucent / introspect: "
          + ", ".join(f"{lucent / medians[name]:.2f}x {label}" for name, label in
                      (("introspect channels", "in fp32"), ("introspect channels --amp bf16", "with --amp"))
                      if name in medians) + " (bar on a GPU: >= 2.5x with --amp)")


def process(args) -> None:
    """Whole processes, alternating: `introspect classes` (defaults, report and site) and the blog program."""
    import os

    introspect = [sys.executable, "-m", "introspect_cli.main", "classes", "--quiet", "--out"]
    here = (None, str(HERE.parent))
    commands = {"introspect classes": (introspect, here),
                "blog program": ([sys.executable, str(HERE / "blog_loop.py"), "--out"], here)}
    if args.baseline:  # another checkout's packages first on the path (and as the working folder)
        baseline = str(Path(args.baseline).resolve())
        commands["introspect classes (baseline)"] = (introspect, ({**os.environ, "PYTHONPATH": baseline}, baseline))
    import resource

    def used() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    clocks = {"wall": time.perf_counter, "cpu": used}  # cpu: the processes' own CPU time, steadier on a shared machine
    times = {clock: {name: [] for name in commands} for clock in clocks}
    with tempfile.TemporaryDirectory() as scratch:
        for i in range(args.repeats):
            for n, (name, (command, (env, cwd))) in enumerate(commands.items()):
                start = {clock: read() for clock, read in clocks.items()}
                subprocess.run([*command, str(Path(scratch) / f"{n}-{i}")], check=True, capture_output=True, env=env,
                               cwd=cwd)
                for clock, read in clocks.items():
                    times[clock][name].append(read() - start[clock])
    for clock, table in times.items():
        medians = {name: statistics.median(t) for name, t in table.items()}
        for name, t in table.items():
            print(f"{clock:<5} {name:<30} median {medians[name]:.2f} s  ({', '.join(f'{s:.2f}' for s in t)})")
        for name in commands:
            if name != "blog program":
                print(f"{clock:<5} {name} / blog program: {medians[name] / medians['blog program']:.2f}x (bar <= 0.8)")


def now() -> tuple[float, float]:
    """Wall time, and CPU time of this process and its finished children (the forked page workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter(), time.process_time() + children.ru_utime + children.ru_stime


class PhaseClock(RunListener):
    """A channels run's listener that marks (``now``) when optimizing starts and when writing starts and ends."""

    def __init__(self) -> None:
        self.marks: dict[str, tuple[float, float]] = {}

    def started(self, items, steps) -> None:
        self.marks["optimize"] = now()

    @contextlib.contextmanager
    def writing(self):
        self.marks["write"] = now()
        yield
        self.marks["end"] = now()


def writing(args) -> None:
    """Phases of a channels run with no dataset: model load, planning, optimization, writing; in wall time and in
    CPU time (this process's and its forked page workers': steadier on a shared machine)."""
    from introspect.channel_runs import run_channels

    start = now()
    loaded = load_model(args.model, meta=MetaOverrides(size=args.size))
    loaded_at = now()
    clock = PhaseClock()
    with tempfile.TemporaryDirectory() as scratch:
        run_channels(loaded.model, loaded.spec, [args.layer], Path(scratch) / "run", listener=clock,
                     config=CHANNELS_DEFAULTS.replace(steps=args.steps, device=args.device, amp=args.amp))
        finished = now()
        count = len(list((Path(scratch) / "run").rglob("*")))
    m = clock.marks
    print(f"torch {torch.__version__}, {args.device}{' --amp' if args.amp else ''}, {torch.get_num_threads()} threads; "
          f"{args.model} {args.layer}, {args.size} px, {args.steps} steps, no dataset; {count} files written")
    phases = {}
    for n, name in enumerate(("wall", "cpu")):
        optimize, write = m["write"][n] - m["optimize"][n], m["end"][n] - m["write"][n]
        phases[name] = (optimize, write, finished[n] - loaded_at[n] - optimize)
        print(f"{name:<4}: load model {loaded_at[n] - start[n]:.2f} s | plan {m['optimize'][n] - loaded_at[n]:.2f} s | "
              f"optimize and assemble {optimize:.2f} s | write {write:.2f} s | beyond loading the model and "
              f"optimizing: {phases[name][2]:.2f} s")
    optimize, write, beyond = phases["wall"]
    print(f"beyond loading the model and optimizing: {beyond:.2f} s wall (bar on the CPU: <= 3 s for 512 channels); "
          f"writing / optimizing = {write / optimize:.1%} (bar on a GPU: <= 10%)")


def layers(args) -> None:
    """`--layer all` against the deepest layer alone, each with a cold examples cache, in one process: wall time, and
    CPU time (this process's and its page workers': steadier on a shared machine), both printed whatever --clock says."""
    from introspect.channel_runs import run_channels
    from introspect.data import load_dataset
    from introspect.layers import select_layers

    loaded = load_model(args.model)
    every = select_layers(loaded.model, loaded.spec.input_shape, "all")
    data = load_dataset(loaded.spec.dataset, "train")
    config = CHANNELS_DEFAULTS.replace(steps=args.steps)
    names = ("--layer all", f"deepest ({every[-1]})")
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    phases: dict[str, list[tuple[float, float, float]]] = {name: [] for name in names}  # wall: pass, optimize, write
    for _ in range(args.repeats):
        for name, chosen in zip(names, (every, every[-1:])):
            with tempfile.TemporaryDirectory() as scratch:
                marks = PhaseClock()
                start = now()
                run_channels(loaded.model, loaded.spec, chosen, Path(scratch) / "run", config=config, data=data,
                             cache_key=None, listener=marks)
                end = now()
                times[name].append((end[0] - start[0], end[1] - start[1]))
                m = {phase: wall for phase, (wall, _) in marks.marks.items()}
                phases[name].append((m["optimize"] - start[0], m["write"] - m["optimize"], m["end"] - m["write"]))
    print(f"{args.model}: {len(every)} layers, --steps {args.steps}, cold cache; medians of {args.repeats}")
    for name, runs in phases.items():
        parts = [statistics.median(run[i] for run in runs) for i in range(3)]
        print(f"wall {name:<24} up to optimizing (the dataset pass) {parts[0]:.2f} s | optimizing {parts[1]:.2f} s | "
              f"writing {parts[2]:.2f} s")
    for n, clock_name in enumerate(("wall", "cpu")):
        medians = {name: statistics.median(t[n] for t in runs) for name, runs in times.items()}
        for name, runs in times.items():
            print(f"{clock_name:<4} {name:<24} median {medians[name]:.2f} s  ({', '.join(f'{t[n]:.2f}' for t in runs)})")
        first, second = medians.values()
        paired = statistics.median(a[n] / b[n] for a, b in zip(*times.values()))
        print(f"{clock_name:<4} all / deepest = {first / second:.2f}x (paired: the median of each round's own ratio "
              f"{paired:.2f}x; bar <= 1.3)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["classes", "channels", "process", "writing", "layers", "parts"])
    parser.add_argument("--model", help="built-in or torchvision:NAME (default per mode)")
    parser.add_argument("--layer", help="channels and writing: the layer")
    parser.add_argument("--channels", type=int, default=64, help="channels: how many (default 64)")
    parser.add_argument("--steps", type=int, help="classes: 144 (the defaults'); channels: 256; writing: 2; layers: 1")
    parser.add_argument("--size", type=int, help="input size in pixels (torchvision models; writing: 32)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--amp", action="store_true", help="also bfloat16 autocast, introspect and the floor")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each; medians kept (default 3)")
    parser.add_argument("--baseline", metavar="DIR",
                        help="process: also time a folder holding another checkout's introspect and introspect_cli "
                             "packages (links to its introspect/ and cli/), e.g. the commit before a change")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall",
                        help="wall, or cpu: this process's CPU time, steadier on a shared machine (with --threads 1)")
    args = parser.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()  # this process's allocator as the CLI's (introspect_cli/memory.py)
    defaults = {"classes": ("mnist", None, None), "channels": ("mnist", "conv2", 256), "process": (None, None, None),
                "writing": ("torchvision:resnet18", "layer4.1.conv2", 2), "layers": ("fashion-mnist", None, 1),
                "parts": ("mnist", None, None)}
    model, layer, steps = defaults[args.mode]
    args.model, args.layer, args.steps = args.model or model, args.layer or layer, args.steps or steps
    if args.mode == "writing":
        args.size = args.size or 32
    {"classes": classes, "channels": channels, "process": process, "writing": writing, "layers": layers,
     "parts": parts}[args.mode](args)


if __name__ == "__main__":
    main()
