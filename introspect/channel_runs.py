"""A channels run in a folder — plan, manifest, optimization split over processes, part files, merge,
report — for the CLI and notebooks alike, resumable after an interruption or a lost process.

The run is a list of work items, one per chunk of the plan. Each process (one, or several under
torchrun: ``distributed.join``) optimizes its share and saves every finished item as a part file;
rank 0 alone claims the folder, merges and writes the run. ``resume_channels`` redoes the items whose
part file is missing. A complete run removes its manifest and part files once its outputs are written: nothing
is left to resume (``introspect rerun`` repeats a run from its run.json).

Nothing from a folder is trusted: the manifest (settings, plan, targets, and the model's and spec's
digests) is pinned by a digest of its own content, each part file names its item and the manifest's
digest and is checked for its shape, and a manifest or part file that does not fit is refused with a
``UserError`` — never merged into a run called complete.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from .channels import (CHANNELS_DEFAULTS, TIMING_BUDGET, ChannelsPlan, ChannelsResult, ChunkResult, ExampleStats,
                       LayerPlan, WorkItem, assemble_channels, cache_examples, cached_examples, calibrate_plan,
                       chunk_channels, dataset_examples_many, estimate_step, examples_pass, plan_channels, split_items, starts_for,
                       visualize_chunk_fitting, work_items)
from .data import ImageDataset
from .distributed import Ranks, fault_after
from .engine import RenderConfig, on_device
from .errors import UserError
from .models.spec import ModelSpec
from .folders import MANIFEST, PARTS, claimed_run, holds_run, read_record
from .records import Provenance, preload, prior_record, run_status, write_channels

MANIFEST_FORMAT = "introspect-channels-manifest/2"
_PART = re.compile(r"item-(\d{5})\.pt")


class RunListener:
    """What a channels run tells its caller while it goes; every method is a no-op here. Raising
    KeyboardInterrupt from ``examples`` or ``step`` stops the run at that point (the finished items
    stay saved, to be resumed)."""

    def plan(self, plan: ChannelsPlan) -> None:
        """The plan every process follows, before any work."""

    def examples(self, done: int, total: int) -> None:
        """The dataset pass: ``done`` of ``total`` images."""

    def started(self, items: Sequence[WorkItem], steps: int) -> None:
        """This process's work items, in the order it will optimize them."""

    def step(self, item: WorkItem, step: int, values: torch.Tensor) -> None:
        """After each optimization step of ``item``; ``values`` are its images' objective values."""

    def note(self, text: str) -> None:
        """Something the user should know (a cache entry recomputed, a NaN objective, train mode)."""

    def writing(self) -> contextlib.AbstractContextManager:
        """Entered while the run's files are written (the CLI defers signals there)."""
        return contextlib.nullcontext()


@dataclass
class ChannelsRun:
    """A finished (or stopped) channels run: its folder, every layer's result, its status and run.json."""

    folder: Path
    results: list[ChannelsResult] = field(default_factory=list)
    status: str = "complete"
    record: dict | None = None  # run.json, on rank 0

    @property
    def complete(self) -> bool:
        return self.status == "complete"


# --- digests ------------------------------------------------------------------------------------------------


def _canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


def model_digest(model: nn.Module) -> str:
    """sha256 of every parameter and buffer (name, dtype, shape, bytes): the weights a run used."""
    sha = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if not isinstance(tensor, torch.Tensor):
            continue
        sha.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        sha.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                   if tensor.numel() else b"")
    return sha.hexdigest()


def spec_digest(spec: ModelSpec) -> str:
    """sha256 of the spec's fields (input shape, normalization, activations, image prior)."""
    return hashlib.sha256(_canonical(spec.to_dict())).hexdigest()


# --- the manifest ---------------------------------------------------------------------------------------------


def _plan_record(plan: ChannelsPlan) -> dict:
    return {"steps": plan.steps, "device": plan.device, "layers": [asdict(p) for p in plan.layers]}


def _plan_from_record(record: dict) -> ChannelsPlan:
    layers = tuple(LayerPlan(**{**p, "output_shape": tuple(p["output_shape"]), "channels": tuple(p["channels"])})
                   for p in record["layers"])
    return ChannelsPlan(layers, record["steps"], record["device"])


def settings_record(config: RenderConfig) -> dict:
    """The render settings as plain JSON values."""
    return json.loads(json.dumps(asdict(config)))


def settings_from_record(record: dict) -> RenderConfig:
    """A RenderConfig from ``settings_record``'s output."""
    from .params import ImageConfig
    from .transforms import TransformConfig

    values = dict(record)
    image, transforms = values.pop("image"), values.pop("transforms")
    tuples = lambda d: {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}  # noqa: E731
    return RenderConfig(**tuples(values), image=ImageConfig(**tuples(image)), transforms=TransformConfig(**tuples(transforms)))


def _manifest(model: nn.Module, spec: ModelSpec, plan: ChannelsPlan, config: RenderConfig, neuron: bool, top_k: int,
              repeat: dict | None) -> dict:
    body = {
        "format": MANIFEST_FORMAT,
        "model": {"weights_sha256": model_digest(model), "spec_sha256": spec_digest(spec)},
        "settings": settings_record(config),
        "targets": {"layers": [p.layer for p in plan.layers], "neuron": neuron, "top_k": top_k},
        "plan": _plan_record(plan),
        "items": [{"id": i.id, "layer": i.layer, "index": i.index, "images": i.images,
                   "channels": chunk_channels(plan[i.layer], i.index)} for i in work_items(plan)],
        "repeat": repeat,
    }
    return {**body, "digest": hashlib.sha256(_canonical(body)).hexdigest()}


def write_manifest(folder: Path, manifest: dict) -> None:
    """The run's plan and work items (for resuming it), written atomically."""
    temporary = folder / f".tmp{os.getpid()}-{MANIFEST}"
    temporary.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(temporary, folder / MANIFEST)


def refuse_complete(folder: str | Path) -> None:
    """A UserError when ``folder`` holds a complete run: there is nothing to resume (its manifest is gone)."""
    if holds_run(folder) and read_record(folder).get("status") == "complete":
        raise UserError("the run in '{folder}' is complete: there is nothing to resume (`introspect rerun {folder}` "
                        "repeats it)",
                        folder=folder)


def read_manifest(folder: str | Path) -> dict:
    """The manifest of a channels run folder, checked against its own digest; UserError otherwise (a complete
    run's too: ``refuse_complete``)."""
    refuse_complete(folder)
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise UserError("'{folder}' has no readable {MANIFEST}: only runs of `introspect channels` can be resumed "
                        "({__name__})",
                        folder=folder, MANIFEST=MANIFEST, __name__=type(exc).__name__) from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise UserError("'{path}' is not a manifest of an introspect channels run (or one of an older version, "
                        "which cannot be resumed: run it again)",
                        path=path)
    body = {k: v for k, v in manifest.items() if k != "digest"}
    if manifest.get("digest") != hashlib.sha256(_canonical(body)).hexdigest():
        raise UserError("'{path}' was changed after the run wrote it (its digest does not match its content); it "
                        "cannot be resumed",
                        path=path)
    try:
        plan = _plan_from_record(manifest["plan"])
        settings_from_record(manifest["settings"])
        expected = [{"id": i.id, "layer": i.layer, "index": i.index, "images": i.images,
                     "channels": chunk_channels(plan[i.layer], i.index)} for i in work_items(plan)]
    except (KeyError, TypeError, ValueError, StopIteration) as exc:
        raise UserError("'{path}' is not a readable manifest ({__name__}: {exc})",
                        path=path, __name__=type(exc).__name__, exc=exc) from None
    if manifest.get("items") != expected:
        raise UserError("the work items in '{path}' do not follow its plan; it cannot be resumed",
                        path=path)
    return manifest


# --- part files -----------------------------------------------------------------------------------------------


def part_path(folder: Path, item: int) -> Path:
    return folder / PARTS / f"item-{item:05d}.pt"


def write_part(folder: Path, item: int, data: dict) -> None:
    """One finished work item, written atomically: a part file present is a finished item."""
    target = part_path(folder, item)
    target.parent.mkdir(exist_ok=True)
    temporary = target.with_name(f".tmp{os.getpid()}-{target.name}")
    try:
        torch.save(data, temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def part_files(folder: Path) -> set[int]:
    """The item numbers of the part files in ``folder`` (any name that is not a part file is refused)."""
    try:
        names = [p.name for p in (folder / PARTS).iterdir() if not p.name.startswith(".tmp")]
    except OSError:
        return set()
    stray = [n for n in names if not _PART.fullmatch(n)]
    if stray:
        raise UserError("'{value}' holds '{value2}', which no introspect run wrote; remove it to resume",
                        value=folder / PARTS, value2=stray[0])
    return {int(_PART.fullmatch(n).group(1)) for n in names}


def read_part(folder: Path, item: WorkItem, manifest: dict, input_shape: Sequence[int]) -> ChunkResult:
    """Part file ``item`` checked against the manifest: its item, the manifest's digest, its channels and shapes."""
    path = part_path(folder, item.id)
    try:
        data = torch.load(path, weights_only=True)
        chunk = ChunkResult.from_dict(data["chunk"])
        digest, number = data["manifest"], data["item"]
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file fails in many ways (zip, pickle, keys)
        raise UserError("part file '{path}' is not readable ({__name__}); remove it to redo that chunk",
                        path=path, __name__=type(exc).__name__) \
            from None
    entry = manifest["items"][item.id]
    images = entry["images"]
    shapes_fit = (isinstance(chunk.render.images, torch.Tensor)
                  and tuple(chunk.render.images.shape) == (images, *input_shape)
                  and isinstance(chunk.activations, torch.Tensor) and tuple(chunk.activations.shape) == (images,)
                  and isinstance(chunk.render.values, torch.Tensor) and tuple(chunk.render.values.shape) == (images,))
    if (digest != manifest["digest"] or number != item.id or chunk.layer != item.layer or chunk.index != item.index
            or list(chunk.channels) != entry["channels"] or not shapes_fit or chunk.render.interrupted_at is not None
            or not bool(torch.isfinite(chunk.render.images).all())):
        raise UserError("part file '{path}' does not belong to this run's item {id} (another run's, copied, or "
                        "changed); remove it to redo that chunk",
                        path=path, id=item.id)
    return chunk


def _part_data(chunk: ChunkResult, item: WorkItem, manifest: dict) -> dict:
    return {"manifest": manifest["digest"], "item": item.id, "chunk": chunk.to_dict()}


def drop_resume_files(folder: Path) -> None:
    """A complete run's part files and manifest (only the names a run writes; parts/ itself when that empties
    it): with its outputs written, nothing of it is left to resume."""
    with contextlib.suppress(OSError):
        for path in (folder / PARTS).iterdir():
            if _PART.fullmatch(path.name) or (path.name.startswith(".tmp") and path.name.endswith(".pt")):
                path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        (folder / PARTS).rmdir()
    (folder / MANIFEST).unlink(missing_ok=True)


# --- the run --------------------------------------------------------------------------------------------------


def examples_for(model: nn.Module, spec: ModelSpec, layers: Sequence[str], data: ImageDataset, *, top_k: int = 5,
                 neuron: bool = False, device: str = "cpu", cache_key: str | None = None, ranks: Ranks | None = None,
                 listener: RunListener | None = None) -> dict[str, ExampleStats]:
    """Every layer's real examples from one dataset pass, its batches split over the ranks; on rank 0
    (an empty dict elsewhere). Cached per layer under ``cache_key`` (the checkpoint's digest)."""
    ranks, listener = ranks or Ranks(), listener or RunListener()
    if ranks.world == 1:
        stats = dataset_examples_many(model, spec, layers, data, k=top_k, neuron=neuron, device=device,
                                      cache_key=cache_key, callback=listener.examples)
    else:
        found, notes = cached_examples(spec, layers, data, top_k, neuron, cache_key) if ranks.main else ({}, [])
        missing = ranks.broadcast([layer for layer in layers if layer not in found] if ranks.main else None)
        part = examples_pass(model, spec, missing, data, top_k, neuron, device=device, callback=listener.examples,
                             shard=(ranks.rank, ranks.world)) if missing else {}
        parts = ranks.gather(part)
        if not ranks.main:
            return {}
        # a rank left without a batch (fewer batches than ranks) sends nothing
        fresh = {layer: _merged((p[layer] for p in parts if layer in p), min(top_k, len(data))) for layer in missing}
        notes += cache_examples(fresh, data, top_k, cache_key, spec) if cache_key and fresh else []
        stats = {**found, **fresh}
        for entry in stats.values():
            entry.notes = list(notes)
    for note in dict.fromkeys(n for s in stats.values() for n in s.notes):
        listener.note(note)
    return stats


def _merged(parts, k: int) -> ExampleStats:
    parts = list(parts)
    total = parts[0]
    for part in parts[1:]:
        total = total.merge(part, k)
    return total


def estimate_channels(model: nn.Module, spec: ModelSpec, plan: ChannelsPlan, config: RenderConfig = CHANNELS_DEFAULTS,
                      neuron: bool = False, on_row: Callable[[dict], None] | None = None,
                      budget: float = TIMING_BUDGET) -> list[dict]:
    """Per layer: seconds per step of its first (full) chunk of ``chunk_images`` images (``estimate_step``: timed
    on batches of ``timed_images`` images, ``timed_seconds`` per step, and ``extrapolated`` when the last is
    smaller than the chunk), the estimated seconds of optimization for the whole layer and the memory of one
    chunk (bytes). ``on_row`` hears each layer's row as it is timed (the timing swallows an interrupt as "stop after this step": the
    caller checks there). The timing of larger batches shares ``budget`` seconds among the layers: what is left,
    half evenly over the layers left and half by their expected cost (images × memory per image, as the work
    items are weighed), so the costly layers, which make most of the total, are timed closest to their chunk."""
    rows, start = [], time.perf_counter()
    costs = [float(layer.images) * layer.bytes_per_image for layer in plan.layers]
    for done, layer in enumerate(plan.layers):
        left = max(0.0, budget - (time.perf_counter() - start))
        share = left * (0.5 / (len(plan.layers) - done) + 0.5 * costs[done] / max(sum(costs[done:]), 1e-9))
        step = estimate_step(model, spec, layer, config, neuron, budget=share)
        rows.append({"layer": layer.layer, "images": layer.images, "chunk": layer.chunk,
                     "chunk_images": step.images, "timed_images": list(step.timed),
                     "extrapolated": step.extrapolated, "timed_seconds": list(step.timings),
                     "seconds_per_step": step.seconds,
                     "seconds": step.seconds * config.steps * layer.images / step.images,
                     "memory_bytes": step.images * layer.bytes_per_image})
        if on_row is not None:
            on_row(rows[-1])
    return rows


def run_channels(model: nn.Module, spec: ModelSpec, layers: Sequence[str], folder: str | Path | None = None, *,
                 channels: str | Sequence[int] | None = None, config: RenderConfig = CHANNELS_DEFAULTS,
                 neuron: bool = False, diverse: int = 1, batch_size: int | None = None,
                 memory_bytes: int | None = None, data: ImageDataset | None = None, top_k: int = 5,
                 examples: dict[str, ExampleStats] | None = None, ranks: Ranks | None = None,
                 listener: RunListener | None = None, provenance: Provenance | None = None,
                 formats: Sequence[str] = ("png",), force: bool = False, repeat: dict | None = None,
                 cache_key: str | None = None, plan: ChannelsPlan | None = None) -> ChannelsRun:
    """Optimize one image (or ``diverse``) per channel of every layer in ``layers`` and write the run folder
    (``folder``, or a new ``runs/channels-NNN``): images.npz, report pages, the site, run.json.

    ``data`` gives real examples, ratios and histograms (one pass for all layers; or pass ``examples``);
    ``ranks`` (from ``distributed.join``) splits the work over torchrun processes — every process calls
    this with the same arguments; ``listener`` hears progress and notes; ``repeat`` is what the caller
    needs to repeat or resume the run (the CLI's load and data arguments), kept in the manifest and
    run.json. An interrupted run keeps its finished chunks: ``resume_channels(folder, ...)`` completes it; a
    complete run removes them and the manifest (``drop_resume_files``).
    ``plan`` (from ``plan_channels`` with these arguments) saves planning again when the caller already did.
    """
    ranks, listener = ranks or Ranks(), listener or RunListener()
    manifest = None
    if ranks.main:
        plan = plan or plan_channels(model, spec, list(layers), channels, diverse=diverse, batch_size=batch_size,
                             steps=config.steps, device=config.device, budget_bytes=memory_bytes)
        if batch_size is None:  # on CUDA: chunks sized from the first chunk's measured peak
            plan = calibrate_plan(model, spec, plan, config, neuron, memory_bytes)
        manifest = _manifest(model, spec, plan, config, neuron, top_k, repeat)
    return _run(model, spec, ranks.broadcast(manifest), folder, config, neuron, data, top_k, examples, ranks, listener,
                provenance, formats, force, cache_key, resume=False)


def resume_channels(folder: str | Path, model: nn.Module, spec: ModelSpec, *, data: ImageDataset | None = None,
                    examples: dict[str, ExampleStats] | None = None, ranks: Ranks | None = None,
                    listener: RunListener | None = None, provenance: Provenance | None = None,
                    formats: Sequence[str] = ("png",), cache_key: str | None = None,
                    device: str | None = None) -> ChannelsRun:
    """Complete the channels run in ``folder`` in place: the settings and plan come from its manifest; the
    chunks without a (valid) part file are optimized. ``model`` and ``spec`` must be the run's — the same
    weights and prior (checked against the manifest's digests) — and ``data`` what it used. ``device``
    replaces the recorded one (under torchrun each rank has its own)."""
    ranks, listener = ranks or Ranks(), listener or RunListener()
    manifest = None
    if ranks.main:
        manifest = read_manifest(folder)
        if manifest["model"]["weights_sha256"] != model_digest(model):
            raise UserError("the model's weights differ from those the run in '{folder}' used; resume it with the same "
                            "model and checkpoint",
                            folder=folder)
        if manifest["model"]["spec_sha256"] != spec_digest(spec):
            raise UserError("the model's metadata or image prior differ from those the run in '{folder}' used (another "
                            "{dataset}, {images}, {mean} or {std}?); resume it with the same ones",
                            settings=("dataset", "images", "mean", "std"), folder=folder)
    manifest = ranks.broadcast(manifest)
    targets, config = manifest["targets"], settings_from_record(manifest["settings"])
    config = config.replace(device=device) if device else config
    return _run(model, spec, manifest, folder, config, targets["neuron"], data,
                targets["top_k"], examples, ranks, listener, provenance, formats, False, cache_key, resume=True)


def _run(model: nn.Module, spec: ModelSpec, manifest: dict, folder, config: RenderConfig, neuron: bool,
         data: ImageDataset | None, top_k: int, examples: dict[str, ExampleStats] | None, ranks: Ranks,
         listener: RunListener, provenance: Provenance | None, formats: Sequence[str], force: bool,
         cache_key: str | None, resume: bool) -> ChannelsRun:
    plan = _plan_from_record(manifest["plan"])
    listener.plan(plan)
    layers = [p.layer for p in plan.layers]
    if examples is None and data is not None:
        examples = examples_for(model, spec, layers, data, top_k=top_k, neuron=neuron, device=config.device,
                                cache_key=cache_key, ranks=ranks, listener=listener)
    items = work_items(plan)
    claimed = claimed_run(folder, "channels", force, resume=resume) if ranks.main else contextlib.nullcontext()
    with claimed as run_folder:  # rank 0 claims the folder; abandoned on any exception
        path = Path(ranks.broadcast(str(run_folder.path) if run_folder else None))
        done: set[int] = set()
        if ranks.main:
            if resume:
                refuse_complete(path)  # again, holding the folder: a run that completed meanwhile
                done = part_files(path)
                outside = sorted(done - {i.id for i in items})
                if outside:
                    raise UserError("'{value}' is not an item of the run's plan; remove it to resume",
                                    value=part_path(path, outside[0]))
                for item in items:  # check every kept part before any work
                    if item.id in done:
                        read_part(path, item, manifest, spec.image_shape)
            else:
                write_manifest(path, manifest)
        done = ranks.broadcast(done)
        shares = split_items([i for i in items if i.id not in done], ranks.world)
        started = time.time()
        if ranks.main:
            preload("introspect.report")  # drawn after the optimization: imported meanwhile
        starts = None
        if config.image.style != "texture":  # every rank needs the real examples its images start from
            starts = ranks.broadcast({p.layer: starts_for(p, config.image.style, examples[p.layer], data)
                                      for p in plan.layers} if ranks.main and examples else None)
        partial = _optimize(model, spec, plan, manifest, shares[ranks.rank], config, neuron, path, ranks, listener,
                            starts)
        ranks.barrier()
        if not ranks.main:
            return ChannelsRun(path, status="complete")
        finished = part_files(path) & {i.id for i in items}
        chunks = [read_part(path, item, manifest, spec.image_shape) for item in items if item.id in finished]
        found = chunks + partial
        results = [assemble_channels(p, [c for c in found if c.layer == p.layer], config, neuron,
                                     (examples or {}).get(p.layer)) for p in plan.layers
                   if any(c.layer == p.layer for c in found)]
        status = _status(items, chunks, partial)
        extra = {"manifest": manifest["digest"]}
        if ranks.world > 1:
            extra["distributed"] = ranks.record([len(s) for s in shares])
        if resume:
            extra["resumed"] = {"items_redone": sum(len(s) for s in shares), "items_kept": len(done)}
        provenance = provenance or _provenance(spec)
        with listener.writing():
            record = write_channels(run_folder, results, provenance, data, time.time() - started, status, formats,
                                    spec.class_names, spec.logits_layer, extra)
            if status == "complete":  # run.json is written: an interrupted or failed run keeps them, to resume
                drop_resume_files(path)
    return ChannelsRun(path, results, status, record)


def _provenance(spec: ModelSpec) -> Provenance:
    return Provenance(model={"name": spec.name}, label=spec.name, prior=prior_record(spec))


def _optimize(model: nn.Module, spec: ModelSpec, plan: ChannelsPlan, manifest: dict, mine: Sequence[WorkItem],
              config: RenderConfig, neuron: bool, folder: Path, ranks: Ranks,
              listener: RunListener, starts: dict | None = None) -> list[ChunkResult]:
    """This rank's items, each saved as a part file when done; a chunk a signal stopped is returned (one
    process) or dropped (several), to be redone on resume."""
    listener.started(mine, config.steps)
    with on_device(model, config.device) as model:
        for item in mine:
            chunk = visualize_chunk_fitting(model, spec, plan[item.layer], item.index, config, neuron,
                                    lambda step, _total, values, item=item: listener.step(item, step, values),
                                    (starts or {}).get(item.layer))
            for note in chunk.render.notes:
                listener.note(note)
            if chunk.render.stopped:
                stopped = list(dict.fromkeys(chunk.channels[i // plan[item.layer].diverse] for i in chunk.render.stopped))
                others = "" if chunk.render.failed else "; their optimization stopped there, the others went on"
                listener.note(chunk.render.failure(f"{item.layer}: ", f" (channel(s) {stopped}){others}"))
            if chunk.render.interrupted_at is not None:
                if ranks.world > 1:
                    raise KeyboardInterrupt
                return [chunk]
            write_part(folder, item.id, _part_data(chunk, item, manifest))
            fault_after(ranks.rank, item.id)
    return []


def _status(items: Sequence[WorkItem], chunks: Sequence[ChunkResult], partial: Sequence[ChunkResult]) -> str:
    if partial:
        return run_status(partial[0].render.interrupted_at)
    if chunks and all(c.render.failed for c in chunks):
        return "failed"  # the objective became NaN/inf for every image
    done = {(c.layer, c.index) for c in chunks}
    missing = [i for i in items if (i.layer, i.index) not in done]
    if not missing:
        return "complete"
    return f"interrupted before layer {missing[0].layer} ({len(items) - len(missing)} of {len(items)} chunks done)"
