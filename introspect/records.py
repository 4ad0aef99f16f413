"""What a run leaves behind: run.json records and the writers of each command's run folder.

``save_run`` writes a result as the CLI does (``introspect.folders.load_run`` reads it back). The
writers only read the results they are given: they never change them.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import os
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .activations import ActivationsResult
from .channels import CHANNELS_DEFAULTS, ChannelsResult
from .classes import CANDIDATE_STRIDE, CLASSES_DEFAULTS, ClassesResult, no_data_transforms, without_data
from .engine import RenderConfig, RenderResult, on_device
from .encoding import save_gif, to_uint8
from .folders import Run, RunFolder, claimed_run
from .models.registry import ARCHITECTURES, BUILTIN_MODELS, LoadedModel, builtin_checkpoint_path
from .params import needs_data_prior, prior_for
from .repeat import Repeat
from .site import build_site, run_index, slug
from .transforms import TransformConfig
from .version import __version__


@dataclass
class Provenance:
    """Where a run came from, for its run.json: the model, the command (if any) and the files it read."""

    model: dict
    label: str  # the model's name for report titles, flagged when its weights are random
    argv: list[str] | None = None  # the command line, for runs of the CLI
    inputs: dict = field(default_factory=dict)
    cwd: str = field(default_factory=lambda: str(Path.cwd()))
    repeat: dict | None = None  # how to repeat the run (``introspect.repeat.Repeat.to_record``)
    prior: dict | None = None  # the image prior the images started from (see ``prior_record``)

    @classmethod
    def of(cls, loaded: LoadedModel, argv: list[str] | None = None, inputs: dict | None = None,
           prior: str | None = None) -> "Provenance":
        """``prior`` says where the spec's image prior came from (default: the spec itself)."""
        return cls(model={"name": loaded.spec.name, "source": loaded.source, "checkpoint_sha256": loaded.sha256,
                          "random_weights": loaded.random_weights,
                          "weights": "random" if loaded.random_weights else "from the model's code"
                          if loaded.weights_from_code else "loaded",
                          "output_kind": loaded.spec.output_kind or ("logits" if loaded.spec.logits is not None else None),
                          "logits_position": loaded.spec.logits_position,
                          "notes": [str(n) for n in loaded.notes]},
                   label=loaded.spec.name + (" (RANDOM WEIGHTS)" if loaded.random_weights else
                                             " (weights from the model's code)" if loaded.weights_from_code else ""),
                   argv=argv, inputs=dict(inputs or {}), prior=prior_record(loaded.spec, prior))


def prior_record(spec, source: str | None = None) -> dict:
    """The image prior for run.json: where it came from and its values (rounded), or that there was none."""
    if spec.image_mean is None and spec.spectrum is None:
        return {"source": source or "none"}
    rounded = lambda values: None if values is None else np.round(np.asarray(values, dtype=np.float64), 5).tolist()  # noqa: E731
    record = {"source": source or "stored with the model", "spectrum": rounded(spec.spectrum),
              "image_mean": rounded(spec.image_mean), "image_support": rounded(spec.image_support),
              "ink_level": None if spec.ink_level is None else round(spec.ink_level, 5)}
    if spec.image_basis is not None:  # k x C*H*W numbers: its size and digest, not the values
        values = np.asarray([spec.basis_mean, *spec.image_basis], dtype=np.float32)
        record["basis"] = {"components": len(spec.image_basis), "sha256": hashlib.sha256(values.tobytes()).hexdigest()}
    return record


def run_status(interrupted_at: int | None, failed: bool = False) -> str:
    """"complete", "interrupted at step N", or "failed" (the objective became NaN/inf for every image)."""
    if failed:
        return "failed"
    return "complete" if interrupted_at is None else f"interrupted at step {interrupted_at}"


def non_finite_record(render) -> dict | None:
    """run.json's account of images whose objective became NaN/inf (a ``RenderResult``); None when none did."""
    if not render.stopped:
        return None
    failure = render.failure()
    return {"images": len(render.stopped), "of": len(render.values), "all": render.failed,
            "first_step": min(render.failed_at.values()) if render.failed_at else None,
            "terms": list(render.failed_terms), "message": str(failure)}


def torchvision_version() -> str:
    """torchvision's version, read from its version.py when it is not loaded yet: importing torchvision to ask
    takes seconds, longer than a default classes run optimizes."""
    import importlib.util
    import re
    import sys

    if "torchvision" not in sys.modules:
        found = importlib.util.find_spec("torchvision")
        version_file = Path(found.origin).parent / "version.py" if found is not None and found.origin else None
        if version_file is not None and version_file.exists():
            match = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", version_file.read_text(), re.M)
            if match:
                return match.group(1)
    import torchvision

    return torchvision.__version__


def base_record(provenance: Provenance, config, seconds: float, status: str, steps_done: int) -> dict:
    """What every run.json holds: model, settings, versions, status and the command that repeats it."""
    import platform

    return {
        "command": None if provenance.argv is None else shlex.join(["introspect", *provenance.argv]),
        "repeat": provenance.repeat,
        "prior": provenance.prior,
        "cwd": provenance.cwd,
        "inputs": provenance.inputs,
        "model": provenance.model,
        "settings": config.to_record() if config is not None else None,
        "seed": config.seed if config is not None else None,
        "status": status,
        "steps_done": steps_done,
        "seconds": round(seconds, 3),
        "versions": {"introspect": __version__, "torch": torch.__version__, "torchvision": torchvision_version(),
                     "numpy": np.__version__, "python": platform.python_version()},
    }


def write_site(run: RunFolder, record: dict, arrays: dict, dataset=None) -> None:
    """The run's explorer: ``site/`` (pages, data, images; see introspect.site) and an index.html showing the
    run's pictures (``run_index``)."""
    temporary = run.path / f".tmp{os.getpid()}-site"
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        build_site([Run(run.path, record, arrays)], temporary, compute=False, dataset=dataset)
        shutil.rmtree(run.path / "site", ignore_errors=True)
        os.replace(temporary, run.path / "site")
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    if "site" not in run.files:
        run.files.append("site")
    with run.file("index.html") as path:
        path.write_text(run_index(run.path / "site", record.get("command_name")))


def _finite(value: float) -> float | None:
    """A float for JSON, None where it is NaN or infinite (JSON has no such numbers)."""
    value = float(value)
    return value if np.isfinite(value) else None


def classes_image_records(result) -> list[dict]:
    """Per class of a ClassesResult: its logit and probability on the final image, the runner-up class
    (the highest other logit), the margin between the two logits, and which candidate was kept."""
    chosen = result.chosen or [0] * len(result.labels)
    return [{"class": label, "name": name, "logit": float(logit), "probability": float(p),
             "runner_up": runner, "runner_up_name": None if runner is None else runner_name,
             "runner_up_logit": _finite(runner_logit), "runner_up_probability": float(runner_p),
             "margin": _finite(margin), "candidate": candidate}
            for label, name, logit, p, runner, runner_name, runner_logit, runner_p, margin, candidate
            in zip(result.labels, result.class_names, result.logits, result.probabilities, result.runner_up,
                   result.runner_up_names, result.runner_up_logits, result.runner_up_probabilities, result.margins,
                   chosen)]


#: zlib level of a run's images.npz: optimized images are noisy and barely compress (a 224 px layer's to about
#: three quarters at any level); level 1 takes 30% less time than numpy's 6 for files within a few percent.
NPZ_LEVEL = 1


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """What ``np.savez_compressed`` writes (``np.load`` reads it), at NPZ_LEVEL."""
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=NPZ_LEVEL, allowZip64=True) as npz:
        for name, array in arrays.items():
            with npz.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def write_classes(run: RunFolder, result, provenance: Provenance, formats: Sequence[str] = ("png",),
                  seconds: float = 0.0) -> None:
    """images.npz, the report in each format, evolution.gif with snapshots, then run.json."""
    from . import report

    arrays = {"images": to_uint8(result.images), "labels": np.asarray(result.labels),
              "scores": result.logits.numpy(), "probabilities": result.probabilities.numpy(),
              "runner_up": np.asarray([-1 if r is None else r for r in result.runner_up]),
              "margins": result.margins.numpy(), "candidate": np.asarray(result.chosen or [0] * len(result.labels))}
    steps = sorted(result.render.snapshots)
    if steps:
        arrays["snapshots"] = np.stack([to_uint8(result.render.snapshots[s]) for s in steps])
        arrays["snapshot_steps"] = np.asarray(steps)
    with run.file("images.npz") as path:
        save_npz(path, arrays)
    fig = report.classes_figure(replace(result, model_name=provenance.label))
    for fmt in formats:
        with run.file(f"report.{fmt}") as path:
            report.save_figure(fig, path)
    if steps:
        with run.file("evolution.gif") as path:
            save_gif([result.render.snapshots[s] for s in steps] + [result.images], path)
    record = base_record(provenance, result.config, seconds,
                         run_status(result.render.interrupted_at, result.render.failed), result.render.steps_done)
    record.update({
        "stopped_non_finite": [result.labels[i] for i in result.render.stopped],
        "non_finite": non_finite_record(result.render),
        "command_name": "classes",
        "objective": result.objective,
        "output_kind": result.output_kind or "logits",  # introspect.outputs: how probabilities were computed
        "logits_position": result.logits_position,  # how a spatial map of logits was reduced (null: not a map)
        "parametrization": result.parametrization,  # the one used: "basis" falls back to "fft" without a data basis
        "candidates": result.candidates,
        "candidate_key_stride": CANDIDATE_STRIDE,
        "selection": "per class, the candidate with the largest margin of the target logit over the runner-up's "
                     "(the model's own logits on the final, untransformed image)",
        "images": classes_image_records(result),
        "candidate_margins": None if result.candidate_margins is None or result.candidates == 1 else
        [[_finite(m) for m in row] for row in result.candidate_margins.tolist()],  # (candidates, classes)
        "history": result.render.history.tolist(),  # (steps, classes): the kept candidates' objective
    })
    write_site(run, record, arrays)
    run.finish(record)


CHANNEL_DEFINITIONS = {
    "activation": "mean over the spatial map of the post-activation output (what the next layer sees); "
                  "Linear: the unit's value after its activation; neuron: the centre position",
    "live": "some real image gives the channel a positive output somewhere; every channel of a layer measured at "
            "a signed output (a logit, a norm's or PReLU's output, after LeakyReLU, ELU or tanh) or after a sigmoid, "
            "which is never called dead or rarely active",
    "ratio": "the visualization's activation / the highest activation of any real image (live channels that are "
             "neither rarely active nor not reached)",
    "rarely active": "live, but active (post-activation > 0 somewhere) on fewer than 1% of the dataset's images",
    "not reached": "no optimized image got a positive activation (on a signed output: nor the best real image's)",
    "saturates": "reached, and every optimized image of the channel is (almost) uniform as saved (8 bits): the channel "
                 "prefers a flat input",
}


def layer_record(result) -> dict:
    """One layer of a channels run in run.json."""
    summary = result.summary()
    # each verdict worked out once for the layer (a property recomputes its whole vector on every read)
    best, dead, rare, not_reached, saturated = (v.tolist() for v in (result.best, result.dead, result.rare,
                                                                     result.not_reached, result.saturated))
    ratio = [None if math.isnan(r) else r for r in result.ratio.tolist()]
    shares = None if result.examples is None else result.examples.active_fraction.tolist()
    return {
        "layer": result.layer, "measured_at": result.measured_at or f"{result.layer} (raw output)",
        "activation": result.activation, "reduction": "centre" if result.neuron else "mean",
        "channels": result.channels, "batch_size": result.batch_size, "style": result.style,
        "penalty": result.penalty, "style_detail": result.style_detail,
        "live": summary.live, "dead": summary.dead, "median_ratio": summary.median_ratio,
        "share_ratio_at_least_1": summary.share_ratio_at_least_1,
        "rarely_active": summary.rare, "not_reached": summary.not_reached,
        "failed_images": summary.failed_images, "failed_channels": list(result.stopped),
        "per_channel": [
            {"channel": c, "activation": best[i], "ratio": ratio[i], "dead": dead[i], "rarely_active": rare[i],
             "not_reached": not_reached[i], "saturates": saturated[i], "active_share": None if shares is None else shares[c]}
            for i, c in enumerate(result.channels)
        ],
    }


def preload(*modules: str) -> None:
    """Import ``modules`` on a background thread while a run optimizes: the report's matplotlib takes about as
    long to import as a default classes run takes to optimize, and torch lets go of the GIL while it computes.
    A module that fails to import here is imported again where it is used, and fails there, in one line."""
    import importlib
    import threading

    def load() -> None:
        for module in modules:
            try:
                importlib.import_module(module)
            except Exception:  # noqa: BLE001 - reported where the module is used
                return

    threading.Thread(target=load, name="introspect-preload", daemon=True).start()


def write_channels(run: RunFolder, results: Sequence, provenance: Provenance, dataset=None, seconds: float = 0.0,
                   status: str | None = None, formats: Sequence[str] = ("png",), class_names: Sequence[str] | None = None,
                   logits_layer: str | None = None, extra: dict | None = None) -> dict:
    """images.npz (all layers), report pages per layer (report-LAYER.png, then -2, -3... for pages past
    4,000 px), the overview as index.png, the first layer's first page again as report.png (and report.FORMAT;
    a PDF holds the overview and every page),
    the site, then run.json (updated with ``extra``; returned). The logits layer's units are named by ``class_names``."""
    from . import report

    rows: dict[str, list] = {key: [] for key in ("images", "labels", "layers", "scores", "examples",
                                                 "example_activations", "ratio", "dead")}
    for r in results:
        n = len(r.channels) * r.diverse
        rows["images"].append(r.saved.numpy())
        rows["labels"].append(np.repeat(r.channels, r.diverse))
        rows["layers"].append(np.array([r.layer] * n))
        rows["scores"].append(r.activations[:n].numpy())
        rows["ratio"].append(r.ratio.repeat_interleave(r.diverse, 0).numpy())
        rows["dead"].append(r.dead.repeat_interleave(r.diverse, 0).numpy())
        if r.examples is not None:
            rows["examples"].append(r.examples.top_indices[r.channels].repeat_interleave(r.diverse, 0).numpy())
            rows["example_activations"].append(r.examples.top_values[r.channels].repeat_interleave(r.diverse, 0).numpy())
    arrays = {k: v[0] if len(v) == 1 else np.concatenate(v) for k, v in rows.items() if v}  # one layer: no copy
    pages, named = [], []
    for r in results:  # each page built where it is saved (by save_figures' workers)
        names = class_names if r.layer == logits_layer else None
        for number, page in enumerate(report.channels_pages(r, dataset.images if dataset is not None else None,
                                                            provenance.label, unit_names=names), 1):
            named.append((f"report-{slug(r.layer)}{'' if number == 1 else f'-{number}'}.png", page))  # a safe name
            pages.append(page)
    overview = report.index_figures(results, provenance.label)
    named += [("index.png" if number == 1 else f"index-{number}.png", page) for number, page in enumerate(overview, 1)]
    if status is None:
        status = run_status(next((r.interrupted_at for r in results if r.interrupted_at is not None), None))
    record = base_record(provenance, results[0].config, seconds, status, min(r.steps_done for r in results))
    first = results[0]
    record.update({
        "command_name": "channels",
        "dataset": None if dataset is None else {"name": dataset.name, "split": dataset.split, "source": dataset.source,
                                                 "count": len(dataset)},
        "definitions": CHANNEL_DEFINITIONS,
        "neuron": first.neuron, "diverse": first.diverse,
        "top_k": first.examples.top_indices.shape[1] if first.examples is not None else None,
        "layers": [layer_record(r) for r in results],
        **(extra or {}),
    })
    with contextlib.ExitStack() as files:  # pages saved by workers while this process builds the site, then moved
        npz = files.enter_context(run.file("images.npz"))

        def meanwhile() -> None:
            """The site, and images.npz on a thread beside it (zlib lets go of the GIL): a 224 px layer's images
            take seconds to compress. Started after the page workers fork, so none forks with a thread running."""
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(1) as pool:
                saving = pool.submit(save_npz, npz, arrays)
                write_site(run, record, arrays, dataset)
                saving.result()

        report.save_figures([(page, files.enter_context(run.file(name))) for name, page in named],
                            meanwhile=meanwhile)
    with run.file("report.png") as path:  # the first layer's first page in full, not the index strip: its bytes
        shutil.copyfile(run.path / named[0][0], path)
    for fmt in formats:
        if fmt == "pdf":
            from matplotlib.backends.backend_pdf import PdfPages  # only for a PDF: importing it takes a while

            with run.file("report.pdf") as path, PdfPages(path) as pdf:
                for page in overview + [build() for build in pages]:
                    pdf.savefig(page)
        elif fmt != "png":
            with run.file(f"report.{fmt}") as path:
                report.save_figure(pages[0](), path)
    return run.finish(record)


def write_activations(run: RunFolder, result, provenance: Provenance, visualizations=None, config=None,
                      formats: Sequence[str] = ("png",), highlight: int = 3, seconds: float = 0.0,
                      logits_layer: str | None = None, not_visualized: Sequence[str] = ()) -> dict:
    """The report (report.png, then report-2.png... for pages past 4,000 px; a PDF holds every page; other
    formats the first), activations.npz, then run.json (returned). ``visualizations`` ({layer: ``Visualized``}) go
    into both, as saved (uint8, ``visualized_images``, with ``visualized_layers`` and ``visualized_channels``);
    ``not_visualized``: layers a signal left without theirs. A run a signal stopped is "interrupted at step N", N its
    steps_done: the fewest steps of a layer visualized (the layer it stopped, or every layer's steps when it stopped
    between two layers)."""
    from . import report

    pages = report.activations_figures(result, visualizations, provenance.label, highlight=highlight,
                                       logits_layer=logits_layer, not_visualized=not_visualized)
    with contextlib.ExitStack() as files:  # every page saved (in parallel), then each moved into place
        report.save_figures([(page, files.enter_context(run.file("report.png" if number == 1 else f"report-{number}.png")))
                             for number, page in enumerate(pages, 1)])
    for fmt in formats:
        if fmt == "pdf":
            from matplotlib.backends.backend_pdf import PdfPages

            with run.file("report.pdf") as path, PdfPages(path) as pdf:
                for page in pages:
                    pdf.savefig(page)
        elif fmt != "png":
            with run.file(f"report.{fmt}") as path:
                report.save_figure(pages[0], path)
    arrays = {layer: output.numpy() for layer, output in result.outputs.items()}
    arrays.update(input=result.input.pixels.numpy(), saliency=result.saliency.numpy(),
                  grad_times_input=result.grad_times_input.numpy(), probabilities=result.probabilities.numpy())
    shown = visualizations or {}
    if shown:
        arrays.update(visualized_images=np.concatenate([to_uint8(v.images) for v in shown.values()]),
                      visualized_layers=np.array([layer for layer, v in shown.items() for _ in v.channels]),
                      visualized_channels=np.array([c for v in shown.values() for c in v.channels], dtype=np.int64))
    with run.file("activations.npz") as path:
        save_npz(path, arrays)
    names = result.class_names
    failure = result.failure()
    steps_done = min(v.steps_done for v in shown.values()) if shown else 0
    stopped = any(v.interrupted_at is not None for v in shown.values()) or bool(not_visualized)
    status = "failed" if failure is not None else run_status(steps_done if stopped else None)
    record = base_record(provenance, config, seconds, status, steps_done)
    record.update({
        "command_name": "activations",
        **({"error": failure} if failure is not None else {}),
        "input": {"source": result.input.source, "conversion": list(result.input.conversion), "label": result.input.label,
                  "file": result.input.file},
        "prediction": None if result.predicted is None else {
            "class": result.predicted, "name": names[result.predicted],
            "probability": float(result.probabilities[result.predicted])},
        "top5": [{"class": i, "name": names[i], "probability": float(result.probabilities[i])} for i in result.top(5)],
        "layers": {layer: {"shape": list(output.shape), "activation_shown": result.activations[layer],
                           "measured_at": result.measured_at.get(layer)}
                   for layer, output in result.outputs.items()},
        "npz_note": "activations.npz holds each layer's values where it is measured (measured_at: after the "
                    "BatchNorm that follows a conv, say) before the activation shown (activation_shown)",
    })
    if visualizations is not None:
        record["visualizations"] = {layer: {"channels": list(v.channels), "steps_done": v.steps_done}
                                    for layer, v in shown.items()}
        record["not_visualized"] = list(not_visualized)
    write_site(run, record, arrays)
    run.finish(record)
    return record


def write_render(run: RunFolder, result: RenderResult, provenance: Provenance, formats: Sequence[str] = ("png",)) -> dict:
    """A render result: its images (uint8) and objective values, a tiled report, and run.json naming the parts
    that made it (returned)."""
    from . import report

    arrays = {"images": to_uint8(result.images), "values": result.values.numpy()}
    steps = sorted(result.snapshots)
    if steps:
        arrays["snapshots"] = np.stack([to_uint8(result.snapshots[s]) for s in steps])
        arrays["snapshot_steps"] = np.asarray(steps)
    with run.file("images.npz") as path:
        save_npz(path, arrays)
    fig = report.render_figure(result, title=provenance.label)
    for fmt in formats:
        with run.file(f"report.{fmt}") as path:
            report.save_figure(fig, path)
    record = base_record(provenance, None, 0.0, run_status(result.interrupted_at, result.failed), result.steps_done)
    record.update({
        "command_name": "render",
        "objective": result.objective,
        "param": result.param,
        "transforms": list(result.transforms),
        "regularizers": list(result.regularizers),
        "values": [_finite(v) for v in result.values.tolist()],
        "stopped_non_finite": list(result.stopped),
        "non_finite": non_finite_record(result),
        "notes": list(result.notes),
        "history": result.history.tolist(),  # (steps, images): the objective during optimization
    })
    return run.finish(record)


def save_run(result, folder: str | Path | None = None, *, loaded: LoadedModel | None = None,
             formats: Sequence[str] = ("png",), dataset=None, force: bool = False,
             provenance: Provenance | None = None) -> Path:
    """Write a classes, channels (one result or a list), activations or render result as a run folder — the
    same files the CLI writes — into ``folder`` (default: a new ``runs/<kind>-NNN``); returns it.
    With ``loaded`` (what ``load_model`` returned) for a built-in model or checkpoint, run.json
    records a recipe that ``introspect rerun`` can repeat. A TypeError for anything else."""
    listed = isinstance(result, list) and result and all(isinstance(r, ChannelsResult) for r in result)
    if not (listed or isinstance(result, (ClassesResult, ChannelsResult, ActivationsResult, RenderResult))):
        from .report import RESULT_TYPES

        raise TypeError(f"save_run takes {RESULT_TYPES} (or a list of ChannelsResult), not {type(result).__name__}")
    if isinstance(result, RenderResult):
        if provenance is None:
            provenance = Provenance.of(loaded) if loaded is not None else Provenance(model={"name": None}, label="")
        with claimed_run(folder, "render", force) as run:
            write_render(run, result, provenance, formats)
        return run.path
    results = [result] if isinstance(result, ChannelsResult) else result
    kind = ("channels" if isinstance(results, list) else
            "activations" if isinstance(result, ActivationsResult) else "classes")
    if provenance is None:
        if loaded is None:
            raise ValueError("save_run needs loaded= (the model's LoadedModel) or provenance=")
        provenance = Provenance.of(loaded)
        provenance.repeat = repeat_of(kind, result, loaded, dataset)
        if provenance.repeat and provenance.repeat["load"].get("checkpoint"):
            provenance.inputs["checkpoint"] = {"path": provenance.repeat["load"]["checkpoint"], "sha256": loaded.sha256}
    with claimed_run(folder, kind, force) as run:
        if kind == "classes":
            write_classes(run, result, provenance, formats)
        elif kind == "channels":
            write_channels(run, results, provenance, dataset, formats=formats,
                           class_names=loaded.spec.class_names if loaded is not None else None,
                           logits_layer=loaded.spec.logits_layer if loaded is not None else None)
        else:
            write_activations(run, result, provenance, formats=formats, logits_layer=loaded.spec.logits
                              if loaded is not None else None)
    return run.path


def repeat_of(kind: str, result, loaded: LoadedModel, dataset=None) -> dict | None:
    """How to repeat a result made in a notebook (``introspect.repeat.Repeat``'s record) in words the command
    line also has — the model (a built-in name or an introspect checkpoint), the settings its options set,
    the classes or layers — or None when the run used anything else. A no-data classes run's transforms are those
    the command line chooses again from the default ones (``_chosen_without_data``)."""
    if kind == "activations":
        return None
    builtin = next((name for name in BUILTIN_MODELS if loaded.source == str(builtin_checkpoint_path(name))), None)
    if builtin is not None:
        load = {"source": builtin, "checkpoint": None}
    elif loaded.spec.architecture in ARCHITECTURES and loaded.sha256 and Path(loaded.source).is_file():
        load = {"source": "mnist", "checkpoint": str(Path(loaded.source).resolve())}
    else:
        return None
    results = result if isinstance(result, list) else [result]
    config = results[0].config
    if kind == "classes" and _chosen_without_data(config, loaded):
        config = config.replace(transforms=TransformConfig())
    defaults = CLASSES_DEFAULTS if kind == "classes" else CHANNELS_DEFAULTS
    if defaults.from_values(config.to_values()) != config:  # a setting no option sets
        return None
    if kind == "classes":
        targets = {"classes": list(result.labels), "objective": result.objective, "candidates": result.candidates}
        data = {}
    else:
        first = results[0]
        if len({tuple(r.channels) for r in results}) != 1:
            return None
        targets = {"layer": [r.layer for r in results], "channels": list(first.channels), "diverse": first.diverse,
                   "batch_size": first.batch_size, "neuron": first.neuron,
                   "top_k": first.examples.top_indices.shape[1] if first.examples is not None else None}
        data = {"dataset": dataset.name if dataset is not None else "none",
                "split": first.examples.split if first.examples is not None else None}
    return Repeat(kind, load, config.to_record(), targets, data).to_record()


def _chosen_without_data(config: RenderConfig, loaded: LoadedModel) -> bool:
    """Whether ``config``'s transforms are the ones ``visualize_classes`` put in place of the default ones for
    ``loaded`` without data — where the command line, which reads no data for it either, does the same."""
    spec = prior_for(loaded.spec, None, derive=config.image.use_prior)[0]
    if needs_data_prior(loaded.spec) or not without_data(spec, config) or config.transforms == TransformConfig():
        return False
    with on_device(loaded.model, config.device) as model:
        return config.transforms == no_data_transforms(model, spec, config.device)
