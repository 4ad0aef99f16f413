"""Run folders: what a run leaves behind, for the CLI and notebooks alike.

``save_run`` writes a result as the CLI does and ``load_run`` reads a folder back.
Folders are claimed exclusively, written file by file atomically, finished by run.json.

A folder "holds a run" only when its run.json parses. While a run writes, it
holds a lock file in the folder, so two runs never write into the same one; a
numbered folder (``runs/classes-001``) is created with an exclusive mkdir and the
next free number is taken on a clash. Every file is written to a temporary name
and moved into place, run.json last, so an interruption or a full disk never
leaves a half-written file or a folder that looks complete.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .errors import UserError
from .models.registry import ARCHITECTURES, LoadedModel

RUN_RECORD = "run.json"
LOCK_NAME = ".introspect-lock"
MANIFEST = "manifest.json"
PARTS = "parts"


def holds_run(folder: str | Path) -> bool:
    """True when ``folder`` has a run.json that parses as a JSON object."""
    try:
        return isinstance(json.loads((Path(folder) / RUN_RECORD).read_text()), dict)
    except (OSError, ValueError, UnicodeDecodeError):
        return False


def read_record(folder: str | Path) -> dict:
    """The run.json of ``folder`` (or of the run.json path itself); UserError if unreadable."""
    path = Path(folder)
    if path.is_dir():
        path = path / RUN_RECORD
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"'{path}' is not a readable run.json ({exc})") from exc
    if not isinstance(record, dict):
        raise UserError(f"'{path}' is not a run.json (not a JSON object)")
    return record


def _lock(folder: Path) -> int | None:
    """Take the folder's lock: an open descriptor, or None when another live process holds it."""
    import fcntl

    path = folder / LOCK_NAME
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as exc:
            raise UserError(f"output folder '{folder}' is not writable ({exc.strerror}); choose another") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:  # the holder before us may have removed the file after we opened it: lock the current one
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


class RunFolder:
    """A claimed run folder: write files with :meth:`file`, then :meth:`finish` with the record,
    or :meth:`abandon` to let it go (removing it if this run created it and wrote nothing)."""

    def __init__(self, path: Path, created: bool, lock_fd: int) -> None:
        self.path = path
        self.created = created
        self.files: list[str] = []
        self._lock_fd: int | None = lock_fd
        self._previous = read_record(path).get("files", []) if holds_run(path) else []

    @contextlib.contextmanager
    def file(self, name: str) -> Iterator[Path]:
        """A temporary path to write ``name`` to; moved into place when the block ends without error."""
        target = self.path / name
        temporary = self.path / f".tmp{os.getpid()}-{name}"
        try:
            yield temporary
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
        if name not in self.files:
            self.files.append(name)

    def write_json(self, name: str, data: dict) -> None:
        with self.file(name) as path:
            path.write_text(json.dumps(data, indent=2, default=str) + "\n")

    def finish(self, record: dict) -> None:
        """Drop an overwritten earlier run's files that this run did not write, then write run.json last."""
        if (self.path / RUN_RECORD).exists():
            (self.path / RUN_RECORD).unlink()
        for name in self._previous:
            if isinstance(name, str) and name not in self.files and name != RUN_RECORD and "/" not in name:
                (self.path / name).unlink(missing_ok=True)
        record = {**record, "files": sorted(set(self.files) | {RUN_RECORD})}
        self.write_json(RUN_RECORD, record)
        self.release()

    def release(self) -> None:
        if self._lock_fd is not None:
            (self.path / LOCK_NAME).unlink(missing_ok=True)
            os.close(self._lock_fd)
            self._lock_fd = None

    def abandon(self) -> None:
        """Release the folder; remove it if this run created it and wrote nothing (no file, no finished chunk)."""
        self.release()
        if self.created and not self.files and not finished_items(self.path):
            for remove in ((self.path / MANIFEST).unlink, (self.path / PARTS).rmdir, self.path.rmdir):
                with contextlib.suppress(OSError):
                    remove()


def _numbered(root: Path, prefix: str) -> RunFolder:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the runs folder '{root}': {exc.strerror}; choose a folder with {out}") from exc
    pattern = re.compile(rf"{re.escape(prefix)}-(\d+)")
    number = max((int(m.group(1)) for p in root.iterdir() if (m := pattern.fullmatch(p.name))), default=0) + 1
    while True:
        path = root / f"{prefix}-{number:03d}"
        try:
            path.mkdir()
        except FileExistsError:
            number += 1
            continue
        except OSError as exc:
            raise UserError(f"cannot create output folder '{path}': {exc.strerror}") from exc
        fd = _lock(path)
        if fd is None:  # another run claimed this folder first: take the next number
            number += 1
            continue
        return RunFolder(path, True, fd)


def check_out(out: str | Path | None, force: bool) -> None:
    """Refuse an output folder that cannot be used, before any work starts."""
    if out is None:
        return
    if str(out).strip() == "":
        raise UserError("{out} is empty; name a folder (leave {out} out for a new numbered one)")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UserError(f"{{out}} '{path}' is an existing file; name a folder")
    if holds_run(path) and not force:
        raise UserError(f"{{out}} '{path}' already holds a run; choose another folder or add {{force}} to overwrite it")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"cannot create output folder '{path}': '{parent}' is a file")
            break


def claim_run_folder(out: str | Path | None, prefix: str, force: bool = False, root: str | Path = "runs",
                     resume: bool = False) -> RunFolder:
    """The folder a run writes to, claimed for this process: a new ``root/prefix-NNN``, or ``out``
    if it holds no earlier run (or ``force``) and no other run is writing into it. ``resume``: ``out``
    is an earlier run's folder with a manifest, to be completed."""
    if resume:
        path = Path(out)
        read_manifest(path)
        fd = _lock(path)
        if fd is None:
            raise UserError(f"another introspect run is writing into '{path}'; wait for it to end before resuming")
        return RunFolder(path, False, fd)
    if out is None:
        return _numbered(Path(root), prefix)
    check_out(out, force)
    path = Path(out)
    created = False
    try:
        path.mkdir(parents=True)
        created = True
    except FileExistsError:
        if not path.is_dir():
            raise UserError(f"{{out}} '{path}' is an existing file; name a folder") from None
    except OSError as exc:
        raise UserError(f"cannot create output folder '{path}': {exc.strerror}") from exc
    fd = _lock(path)
    if fd is None:
        raise UserError(f"another introspect run is writing into {{out}} '{path}'; wait for it or choose another folder")
    run = RunFolder(path, created, fd)
    if holds_run(path) and not force:  # written by a run that finished after our first check
        run.release()
        raise UserError(f"{{out}} '{path}' already holds a run; choose another folder or add {{force}} to overwrite it")
    return run


def write_manifest(folder: Path, manifest: dict) -> None:
    """The run's plan and work items (for resuming it), written atomically."""
    temporary = folder / f".tmp{os.getpid()}-{MANIFEST}"
    temporary.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(temporary, folder / MANIFEST)


def read_manifest(folder: str | Path) -> dict:
    """The manifest of a run folder; UserError when there is none."""
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"'{folder}' has no readable {MANIFEST}: only runs of `introspect channels` can be resumed "
                        f"({exc})") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("argv"), list):
        raise UserError(f"'{path}' is not a manifest of `introspect channels`")
    return manifest


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


def read_part(folder: Path, item: int) -> dict:
    return torch.load(part_path(folder, item), weights_only=True)


def finished_items(folder: Path) -> set[int]:
    """The work items whose part file is in ``folder``."""
    pattern = re.compile(r"item-(\d+)\.pt")
    try:
        return {int(m.group(1)) for p in (folder / PARTS).iterdir() if (m := pattern.fullmatch(p.name))}
    except OSError:
        return set()


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Pixel-space floats in [0, 1] -> uint8, rounding to nearest."""
    return (images.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def save_gif(frames: Sequence[torch.Tensor], path: str | Path, scale: int = 4, duration_ms: int = 400) -> None:
    """Each frame (N, C, H, W) becomes one GIF frame: the N images side by side, upscaled."""
    from PIL import Image

    pictures = []
    for frame in frames:
        tiles = [np.pad(to_uint8(img), ((0, 0), (1, 1), (1, 1)), constant_values=128) for img in frame]
        strip = np.concatenate(tiles, axis=2)
        strip = strip[0] if strip.shape[0] == 1 else np.transpose(strip, (1, 2, 0))
        picture = Image.fromarray(strip)
        pictures.append(picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST))
    pictures[0].save(Path(path), save_all=True, append_images=pictures[1:], duration=duration_ms, loop=0)


@dataclass
class Provenance:
    """Where a run came from, for its run.json: the model, the command (if any) and the files it read."""

    model: dict
    label: str  # the model's name for report titles, flagged when its weights are random
    argv: list[str] | None = None  # the command line, for runs of the CLI
    inputs: dict = field(default_factory=dict)
    cwd: str = field(default_factory=lambda: str(Path.cwd()))
    recipe: dict | None = None  # for runs written from Python: what repeats them (see ``recipe``)
    load: dict | None = None  # load_model's arguments (source, checkpoint, weights, trust_checkpoint, meta)
    prior: dict | None = None  # the image prior the images started from (see ``prior_record``)

    @classmethod
    def of(cls, loaded: LoadedModel, argv: list[str] | None = None, inputs: dict | None = None,
           prior: str | None = None) -> "Provenance":
        """``prior`` says where the spec's image prior came from (default: the spec itself)."""
        return cls(model={"name": loaded.spec.name, "source": loaded.source, "checkpoint_sha256": loaded.sha256,
                          "random_weights": loaded.random_weights, "notes": [str(n) for n in loaded.notes]},
                   label=loaded.spec.name + (" (RANDOM WEIGHTS)" if loaded.random_weights else ""),
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


def run_status(interrupted_at: int | None) -> str:
    return "complete" if interrupted_at is None else f"interrupted at step {interrupted_at}"


def base_record(provenance: Provenance, config, seconds: float, status: str, steps_done: int) -> dict:
    """What every run.json holds: model, settings, versions, status and the command that repeats it."""
    import platform

    import torchvision

    from . import __version__

    return {
        "command": None if provenance.argv is None else shlex.join(["introspect", *provenance.argv]),
        "argv": provenance.argv,
        "recipe": provenance.recipe,
        "load": provenance.load,
        "prior": provenance.prior,
        "cwd": provenance.cwd,
        "inputs": provenance.inputs,
        "model": provenance.model,
        "settings": asdict(config) if config is not None else None,
        "seed": config.seed if config is not None else None,
        "status": status,
        "steps_done": steps_done,
        "seconds": round(seconds, 3),
        "versions": {"introspect": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
    }


def write_site(run: RunFolder, record: dict, arrays: dict, dataset=None) -> None:
    """The run's explorer: ``site/`` (pages, data, images; see introspect.explore) and an index.html opening it."""
    from . import explore

    temporary = run.path / f".tmp{os.getpid()}-site"
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        explore.build_site([Run(run.path, record, arrays)], temporary, compute=False, dataset=dataset)
        shutil.rmtree(run.path / "site", ignore_errors=True)
        os.replace(temporary, run.path / "site")
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    if "site" not in run.files:
        run.files.append("site")
    with run.file("index.html") as path:
        path.write_text(explore.OPEN_SITE)


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


def write_classes(run: RunFolder, result, provenance: Provenance, formats: Sequence[str] = ("png",),
                  seconds: float = 0.0) -> None:
    """images.npz, the report in each format, evolution.gif with snapshots, then run.json."""
    from . import report
    from .classes import CANDIDATE_STRIDE

    arrays = {"images": to_uint8(result.images), "labels": np.asarray(result.labels),
              "scores": result.logits.numpy(), "probabilities": result.probabilities.numpy(),
              "runner_up": np.asarray([-1 if r is None else r for r in result.runner_up]),
              "margins": result.margins.numpy(), "candidate": np.asarray(result.chosen or [0] * len(result.labels))}
    steps = sorted(result.render.snapshots)
    if steps:
        arrays["snapshots"] = np.stack([to_uint8(result.render.snapshots[s]) for s in steps])
        arrays["snapshot_steps"] = np.asarray(steps)
    with run.file("images.npz") as path:
        np.savez_compressed(path, **arrays)
    result.model_name = provenance.label
    fig = report.classes_figure(result)
    for fmt in formats:
        with run.file(f"report.{fmt}") as path:
            report.save_figure(fig, path)
    if steps:
        with run.file("evolution.gif") as path:
            save_gif([result.render.snapshots[s] for s in steps] + [result.images], path)
    record = base_record(provenance, result.config, seconds, run_status(result.render.interrupted_at),
                         result.render.steps_done)
    record.update({
        "stopped_non_finite": [result.labels[i] for i in result.render.stopped],
        "command_name": "classes",
        "objective": result.objective,
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
    "live": "some real image gives the channel a positive output somewhere",
    "ratio": "the visualization's activation / the highest activation of any real image (live channels that are "
             "neither rarely active nor not reached)",
    "rarely active": "live, but active (post-activation > 0 somewhere) on fewer than 1% of the dataset's images",
    "not reached": "no optimized image got a positive activation",
}


def layer_record(result) -> dict:
    """One layer of a channels run in run.json."""
    summary = result.summary()
    ratio, rare, not_reached = result.ratio, result.rare, result.not_reached
    return {
        "layer": result.layer, "activation": result.activation, "reduction": "centre" if result.neuron else "mean",
        "channels": result.channels, "batch_size": result.batch_size,
        "live": summary.live, "dead": summary.dead, "median_ratio": summary.median_ratio,
        "share_ratio_at_least_1": summary.share_ratio_at_least_1,
        "rarely_active": summary.rare, "not_reached": summary.not_reached,
        "per_channel": [
            {"channel": c, "activation": float(result.best[i]),
             "ratio": None if torch.isnan(ratio[i]) else float(ratio[i]), "dead": bool(result.dead[i]),
             "rarely_active": bool(rare[i]), "not_reached": bool(not_reached[i]),
             "active_share": None if result.examples is None else float(result.examples.active_fraction[c])}
            for i, c in enumerate(result.channels)
        ],
    }


def write_channels(run: RunFolder, results: Sequence, provenance: Provenance, dataset=None, seconds: float = 0.0,
                   status: str | None = None, formats: Sequence[str] = ("png",), class_names: Sequence[str] | None = None,
                   logits_layer: str | None = None, extra: dict | None = None) -> None:
    """images.npz (all layers), report pages per layer (report-LAYER.png, then -2, -3... for pages past
    4,000 px), the overview as index.png and report.png (and report.FORMAT; a PDF holds every page),
    the site, then run.json (updated with ``extra``). The logits layer's units are named by ``class_names``."""
    from matplotlib.backends.backend_pdf import PdfPages

    from . import report

    rows: dict[str, list] = {key: [] for key in ("images", "labels", "layers", "scores", "examples",
                                                 "example_activations", "ratio", "dead")}
    for r in results:
        n = len(r.channels) * r.diverse
        rows["images"].append(to_uint8(r.images[:n]))
        rows["labels"].append(np.repeat(r.channels, r.diverse))
        rows["layers"].append(np.array([r.layer] * n))
        rows["scores"].append(r.activations[:n].numpy())
        rows["ratio"].append(r.ratio.repeat_interleave(r.diverse, 0).numpy())
        rows["dead"].append(r.dead.repeat_interleave(r.diverse, 0).numpy())
        if r.examples is not None:
            rows["examples"].append(r.examples.top_indices[r.channels].repeat_interleave(r.diverse, 0).numpy())
            rows["example_activations"].append(r.examples.top_values[r.channels].repeat_interleave(r.diverse, 0).numpy())
    arrays = {k: np.concatenate(v) for k, v in rows.items() if v}
    with run.file("images.npz") as path:
        np.savez_compressed(path, **arrays)
    pages = []
    for r in results:
        names = class_names if r.layer == logits_layer else None
        for number, page in enumerate(report.channels_figures(r, dataset.images if dataset is not None else None,
                                                              provenance.label, unit_names=names), 1):
            with run.file(f"report-{r.layer}{'' if number == 1 else f'-{number}'}.png") as path:
                report.save_figure(page, path)
            pages.append(page)
    overview = report.index_figures(results, provenance.label)
    index = overview[0]
    for name in ("index.png", "report.png"):
        with run.file(name) as path:
            report.save_figure(index, path)
    for number, page in enumerate(overview[1:], 2):
        with run.file(f"index-{number}.png") as path:
            report.save_figure(page, path)
    for fmt in formats:
        if fmt == "pdf":
            with run.file("report.pdf") as path, PdfPages(path) as pdf:
                for page in overview + pages:
                    pdf.savefig(page)
        elif fmt != "png":
            with run.file(f"report.{fmt}") as path:
                report.save_figure(index, path)
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
    write_site(run, record, arrays, dataset)
    run.finish(record)


def write_activations(run: RunFolder, result, provenance: Provenance, visualizations=None, config=None,
                      formats: Sequence[str] = ("png",), highlight: int = 3, seconds: float = 0.0,
                      logits_layer: str | None = None) -> dict:
    """The report (report.png, then report-2.png... for pages past 4,000 px; a PDF holds every page; other
    formats the first), activations.npz, then run.json (returned)."""
    from matplotlib.backends.backend_pdf import PdfPages

    from . import report

    pages = report.activations_figures(result, visualizations, provenance.label, highlight=highlight,
                                       logits_layer=logits_layer)
    for number, page in enumerate(pages, 1):
        with run.file("report.png" if number == 1 else f"report-{number}.png") as path:
            report.save_figure(page, path)
    for fmt in formats:
        if fmt == "pdf":
            with run.file("report.pdf") as path, PdfPages(path) as pdf:
                for page in pages:
                    pdf.savefig(page)
        elif fmt != "png":
            with run.file(f"report.{fmt}") as path:
                report.save_figure(pages[0], path)
    arrays = {layer: output.numpy() for layer, output in result.outputs.items()}
    arrays.update(input=result.input.pixels.numpy(), saliency=result.saliency.numpy(),
                  grad_times_input=result.grad_times_input.numpy(), probabilities=result.probabilities.numpy())
    with run.file("activations.npz") as path:
        np.savez_compressed(path, **arrays)
    names = result.class_names
    record = base_record(provenance, config, seconds, "complete", 0)
    record.update({
        "command_name": "activations",
        "input": {"source": result.input.source, "conversion": list(result.input.conversion), "label": result.input.label},
        "prediction": None if result.predicted is None else {
            "class": result.predicted, "name": names[result.predicted],
            "probability": float(result.probabilities[result.predicted])},
        "top5": [{"class": int(i), "name": names[int(i)], "probability": float(result.probabilities[i])}
                 for i in torch.argsort(result.probabilities, descending=True)[:5]],
        "layers": {layer: {"shape": list(output.shape), "activation_shown": result.activations[layer]}
                   for layer, output in result.outputs.items()},
        "npz_note": "activations.npz holds each layer's output as its hook records it (before any functional ReLU)",
    })
    write_site(run, record, arrays)
    run.finish(record)
    return record


def save_run(result, folder: str | Path | None = None, *, loaded: LoadedModel | None = None,
             formats: Sequence[str] = ("png",), dataset=None, force: bool = False,
             provenance: Provenance | None = None) -> Path:
    """Write a classes, channels (one result or a list), activations or render result as a run folder — the
    same files the CLI writes — into ``folder`` (default: a new ``runs/<kind>-NNN``); returns it.
    With ``loaded`` (what ``load_model`` returned) for a built-in model or checkpoint, run.json
    records a recipe that ``introspect rerun`` can repeat. A TypeError for anything else."""
    from .activations import ActivationsResult
    from .channels import ChannelsResult
    from .classes import ClassesResult
    from .engine import RenderResult
    from .report import RESULT_TYPES

    if isinstance(result, RenderResult):
        from .render_runs import save_render

        return save_render(result, folder, loaded=loaded, formats=formats, force=force, provenance=provenance)
    listed = isinstance(result, list) and result and all(isinstance(r, ChannelsResult) for r in result)
    if not (listed or isinstance(result, (ClassesResult, ChannelsResult, ActivationsResult))):
        raise TypeError(f"save_run takes {RESULT_TYPES} (or a list of ChannelsResult), not {type(result).__name__}")
    results = [result] if isinstance(result, ChannelsResult) else result
    kind = ("channels" if isinstance(results, list) else
            "activations" if isinstance(result, ActivationsResult) else "classes")
    if provenance is None:
        if loaded is None:
            raise ValueError("save_run needs loaded= (the model's LoadedModel) or provenance=")
        provenance = Provenance.of(loaded)
        provenance.recipe = recipe(kind, result, loaded, dataset)
        if provenance.recipe and "checkpoint" in provenance.recipe:
            provenance.inputs["checkpoint"] = {"path": provenance.recipe["checkpoint"], "sha256": loaded.sha256}
    run = claim_run_folder(folder, kind, force)
    try:
        if kind == "classes":
            write_classes(run, result, provenance, formats)
        elif kind == "channels":
            write_channels(run, results, provenance, dataset, formats=formats,
                           class_names=loaded.spec.class_names if loaded is not None else None,
                           logits_layer=loaded.spec.logits_layer if loaded is not None else None)
        else:
            write_activations(run, result, provenance, formats=formats, logits_layer=loaded.spec.logits
                              if loaded is not None else None)
    except BaseException:
        run.abandon()
        raise
    return run.path


def recipe(kind: str, result, loaded: LoadedModel, dataset=None) -> dict | None:
    """What repeats ``result`` in words the command line also has — the model (a built-in name or an
    introspect checkpoint), the settings it exposes, the classes or layers — or None when the
    run used anything else. ``introspect rerun`` turns it into a command."""
    from .channels import CHANNELS_DEFAULTS
    from .classes import CLASSES_DEFAULTS
    from .models.registry import BUILTIN_MODELS, builtin_checkpoint_path

    builtin = next((name for name in BUILTIN_MODELS if loaded.source == str(builtin_checkpoint_path(name))), None)
    if builtin is not None:
        model = {"model": builtin}
    elif loaded.spec.architecture in ARCHITECTURES and loaded.sha256 and Path(loaded.source).is_file():
        model = {"checkpoint": str(Path(loaded.source).resolve())}
    else:
        return None
    results = result if isinstance(result, list) else [result]
    config = results[0].config
    defaults = CLASSES_DEFAULTS if kind == "classes" else CHANNELS_DEFAULTS
    from .params import STARTS

    start = next((name for name, bias in STARTS.items() if bias == config.image.init_bias and name != "auto"), None)
    settings = {"steps": config.steps, "lr": config.lr, "seed": config.seed, "tv": config.tv, "pull": config.pull,
                "ink": config.ink, "l2": config.l2, "blur": config.blur, "snapshots": list(config.snapshots), "device": config.device, "amp": config.amp,
                "param": config.image.parametrization, "start": start}
    expressible = replace(defaults, **{k: v for k, v in settings.items() if k not in ("param", "snapshots", "start")},
                          snapshots=config.snapshots, image=replace(defaults.image, parametrization=settings["param"],
                                                                    init_bias=config.image.init_bias))
    if kind == "activations" or expressible != config:
        return None
    if kind == "classes":
        return {"command": kind, **model, **settings, "classes": list(result.labels), "objective": result.objective,
                "candidates": result.candidates}
    first = results[0]
    if len({tuple(r.channels) for r in results}) != 1:
        return None
    return {"command": kind, **model, **settings, "layer": [r.layer for r in results], "channels": list(first.channels),
            "diverse": first.diverse, "batch_size": first.batch_size, "neuron": first.neuron,
            "dataset": dataset.name if dataset is not None else "none",
            "split": first.examples.split if first.examples is not None else None,
            "top_k": first.examples.top_indices.shape[1] if first.examples is not None else None}


@dataclass
class Run:
    """A run folder read back: its run.json and its arrays (images.npz or activations.npz)."""

    path: Path
    record: dict
    arrays: dict[str, np.ndarray]

    @property
    def kind(self) -> str:
        return self.record.get("command_name", "")


def load_run(folder: str | Path) -> Run:
    """Read a run folder written by the CLI or ``save_run``; a UserError if it holds no complete run.json."""
    path = Path(folder)
    record = read_record(path)
    folder = path if path.is_dir() else path.parent
    arrays = {}
    for name in ("images.npz", "activations.npz"):
        if (folder / name).is_file():
            with np.load(folder / name) as data:
                arrays = {key: data[key] for key in data.files}
            break
    return Run(folder, record, arrays)
