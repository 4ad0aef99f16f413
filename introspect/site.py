"""A static web site from run folders of one model: model, layer, channel, class and image pages.

``build_site(runs, out)`` writes ``index.html``, one HTML page per layer, class and image,
``data/*.js`` (each page's data, loaded by a ``<script>`` tag: no fetch, so the site works from
file://), PNGs under ``img/`` and the shared ``explore.js``/``explore.css``. A layer's channels
share one page, ``channel-<layer>.html#<channel>``, whose data come in blocks of CHANNEL_BLOCK
channels (``data/channel-<layer>/<block>.js``, loaded as the page asks for a channel): a
2048-channel layer is a few dozen files, not thousands.
With ``compute=True`` what the runs lack (see ``introspect.explore``) is computed from the
recorded model and dataset and cached under ``cache_dir()/explore``; when they cannot be
loaded the pages say so.

Run folders are files people send each other, so what they hold is data: every record and
array is checked before use (a UserError names what does not fit), every file name derived
from them is a slug that stays in the site folder (unique per site), and explore.js puts
every value into the page as text. A site folder holds a marker (``.introspect-site``, the
files introspect wrote there): only such a folder, or a new or empty one, is written to, and
only the files introspect made are replaced. The site is built in a temporary folder inside
it and moved into place, pages last, old files removed only then: an interruption never
leaves a page pointing at a deleted file.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import html
import json
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .cache import cache_path, cached, torch_load
from .channels import HISTOGRAM_BINS, HISTOGRAM_EDGES, RARE_SHARE, histogram_bins
from .encoding import colored, overlay, save_png, shown_channels
from .errors import Message, UserError
from .explore import CLASS_TOP, compute_classes, compute_layers, load_data, load_images, load_recorded_model, recorded_images
from .folders import Run, holds_run, load_run
from .layers import describe_layers
from .objectives import ACTIVATION_FUNCTIONS
from .quality import saturates

ASSETS = Path(__file__).with_name("explore_assets")
#: The file in every site folder that says introspect made it, and which files it wrote there.
MARKER = ".introspect-site"
#: The temporary folder (inside the site folder) a site is built in before it is moved into place.
BUILD_PREFIX = ".introspect-build-"
#: Classes a run may name (labels at or past it are refused: each class is a page).
MAX_CLASSES = 100_000
_SLUG_LENGTH = 80


def slug(name: str) -> str:
    """A layer name as a file-name part that cannot leave its folder: letters, digits and ``_.-`` only, not
    starting with a dot, at most 80 characters; a name that had to be changed gets 8 hex digits of its sha256,
    so two names never share a slug by sanitizing ("a/b" -> "a_b-5c1f0cc6", "a_b" stays "a_b")."""
    text = str(name)
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:_SLUG_LENGTH]
    clean = re.sub(r"^\.", "_", clean)
    if clean == text and clean:
        return clean
    return f"{clean}-{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}".lstrip("-")


def unique_slugs(names) -> dict[str, str]:
    """Each name's slug, unique among ``names`` (also ignoring case, for case-insensitive file systems): a
    name whose slug is taken gets -2, -3..."""
    table: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        if name in table:
            continue
        base = candidate = slug(name)
        number = 1
        while candidate.lower() in taken:
            number += 1
            candidate = f"{base}-{number}"
        taken.add(candidate.lower())
        table[name] = candidate
    return table


#: Channels per data file of a layer's channel page (the page loads the block that holds the channel shown).
CHANNEL_BLOCK = 64


def channel_page(layer_slug: str, channel: int) -> str:
    """A channel's page: its layer's channel page, the channel after the ``#``."""
    return f"channel-{layer_slug}.html#{int(channel)}"


def channel_block(layer_slug: str, block: int) -> str:
    """The data file of a layer's channels ``block * CHANNEL_BLOCK`` to ``(block + 1) * CHANNEL_BLOCK - 1``."""
    return f"data/channel-{layer_slug}/{int(block)}.js"


def histogram_page(counts: torch.Tensor, low: float, high: float, optimized: float | None = None) -> dict:
    """A channel's histogram (counts per bin of channels.HISTOGRAM_EDGES) for its page: the bins from the
    first to the last non-empty one, each with its lower and upper edge (None: unbounded; the first bin
    of all holds values <= 0, the last values >= the top edge), and the lowest and highest activation.
    ``optimized`` (the optimized image's activation) is marked: ``at`` its bin among those shown, or
    ``beyond`` "left" or "right" when it lies past them (drawn as an arrow at that edge)."""
    edges = HISTOGRAM_EDGES.tolist()
    lower, upper = [None, 0.0, *edges], [0.0, *edges, None]
    filled = torch.nonzero(counts).flatten().tolist() or [0]
    first, last = filled[0], filled[-1] + 1
    page = {"counts": counts[first:last].tolist(), "lower": lower[first:last], "upper": upper[first:last],
            "low": _num(low), "high": _num(high), "optimized": None}
    if _num(optimized) is not None:
        where = int(histogram_bins(torch.tensor([float(optimized)]))[0])
        page["optimized"] = {"value": _num(optimized), "at": where - first if first <= where < last else None,
                             "beyond": "left" if where < first else "right" if where >= last else None}
    return page


# --- checking what the runs hold ----------------------------------------------------------------


class _Bad(Exception):
    """What does not fit in a run's record or arrays (said as a UserError naming the run)."""


def _need(ok, what: str) -> None:
    if not ok:
        raise _Bad(what)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _optional(value, check) -> bool:
    return value is None or check(value)


def _array(arrays: dict, key: str, ndim: int | None = None, kind: str = "iuf", length: int | None = None):
    value = arrays.get(key)
    _need(isinstance(value, np.ndarray), f"its arrays lack '{key}'")
    _need(value.dtype.kind in kind, f"array '{key}' holds {value.dtype} values")
    _need(ndim is None or value.ndim == ndim, f"array '{key}' has shape {value.shape}")
    _need(length is None or len(value) == length, f"array '{key}' has {len(value) if value.ndim else 0} rows, not {length}")
    return value


def _images(arrays: dict, key: str, length: int | None = None):
    images = _array(arrays, key, 4, "u", length)
    _need(images.dtype == np.uint8 and min(images.shape[1:]) > 0,
          f"array '{key}' holds no images (N, C, H, W) of uint8: {images.dtype} {images.shape}")
    return images


def _check_record(kind: str, record: dict, arrays: dict) -> None:
    """Raise _Bad unless ``record`` and ``arrays`` hold what explore reads from a run of ``kind``."""
    model = record.get("model")
    _need(_optional(model, lambda m: isinstance(m, dict)), "'model' is not an object")
    for key in ("name", "checkpoint_sha256"):
        _need(_optional((model or {}).get(key), lambda v: isinstance(v, str)), f"model '{key}' is not a string")
    for key in ("repeat", "load", "recipe"):
        _need(_optional(record.get(key), lambda v: isinstance(v, dict)), f"'{key}' is not an object")
    if kind == "channels":
        diverse = record.get("diverse")
        _need(_optional(diverse, lambda d: _is_int(d) and 1 <= d <= 1000), "'diverse' is not a count")
        diverse = int(diverse or 1)
        dataset = record.get("dataset")
        _need(_optional(dataset, lambda d: isinstance(d, dict) and isinstance(d.get("name"), str)
                        and isinstance(d.get("split"), str) and _is_int(d.get("count")) and d["count"] >= 0),
              "'dataset' is not an object with a name, a split and a count")
        layers = record.get("layers")
        _need(isinstance(layers, list) and all(isinstance(l, dict) for l in layers), "'layers' is not a list of objects")
        names = _array(arrays, "layers", 1, "U")
        images = _images(arrays, "images", len(names))
        _array(arrays, "scores", 1, length=len(images))
        examples = None
        if "examples" in arrays:
            examples = _array(arrays, "examples", 2, "iu", len(images))
            _array(arrays, "example_activations", 2, length=len(images))
            _need(arrays["example_activations"].shape == examples.shape, "arrays 'examples' and 'example_activations' differ")
            _need(examples.size == 0 or int(examples.min()) >= 0, "array 'examples' holds negative indices")
            _need(dataset is None or examples.size == 0 or int(examples.max()) < dataset["count"],
                  "array 'examples' holds indices past the dataset")
        for layer in layers:
            name, per_channel = layer.get("layer"), layer.get("per_channel")
            _need(isinstance(name, str), "a layer's 'layer' is not a string")
            _need(isinstance(per_channel, list) and all(isinstance(e, dict) for e in per_channel),
                  f"layer {name!r}: 'per_channel' is not a list of objects")
            rows = int(np.count_nonzero(names == name))
            _need(rows >= len(per_channel) * diverse, f"layer {name!r}: {rows} images for {len(per_channel)} channels")
            for entry in per_channel:
                _need(_is_int(entry.get("channel")) and 0 <= entry["channel"] < 10**8,
                      f"layer {name!r}: a channel index is not a whole number >= 0: {entry.get('channel')!r}"[:200])
                for key in ("activation", "ratio", "active_share"):
                    _need(_optional(entry.get(key), _is_number), f"layer {name!r}: '{key}' is not a number")
                _need(_optional(entry.get("dead"), lambda d: isinstance(d, bool)), f"layer {name!r}: 'dead' is not true or false")
    elif kind == "classes":
        entries = record.get("images")
        _need(isinstance(entries, list) and all(isinstance(i, dict) and _is_int(i.get("class")) and 0 <= i["class"] < MAX_CLASSES
                                                 and isinstance(i.get("name"), (str, int)) for i in entries),
              "'images' is not a list of objects with a class index and a name")
        labels = _array(arrays, "labels", 1, "iu")
        _need(labels.size == 0 or (int(labels.min()) >= 0 and int(labels.max()) < MAX_CLASSES),
              f"array 'labels' holds class indices outside 0 to {MAX_CLASSES - 1}")
        _images(arrays, "images", len(labels))
        for key in ("probabilities", "scores"):
            _array(arrays, key, 1, length=len(labels))
    elif kind == "activations":
        layers = record.get("layers")
        _need(isinstance(layers, dict), "'layers' is not an object")
        for name, info in layers.items():
            _need(isinstance(info, dict) and isinstance(info.get("shape"), list) and all(_is_int(n) for n in info["shape"])
                  and info.get("activation_shown") in ACTIVATION_FUNCTIONS,
                  f"layer {name!r}: not an object with a shape (whole numbers) and a known 'activation_shown'")
            values = _array(arrays, name, None, "iuf")
            _need(1 <= values.ndim <= 3 and values.size > 0, f"array {name!r} has shape {values.shape}")
        for key in ("input", "saliency"):
            _need(_array(arrays, key, 3).shape[0] >= 1, f"array '{key}' is not an image (C, H, W)")
        source = record.get("input")
        _need(isinstance(source, dict) and isinstance(source.get("source"), str), "'input' has no 'source' string")
        named = lambda t: (isinstance(t, dict) and _is_int(t.get("class")) and 0 <= t["class"] < MAX_CLASSES  # noqa: E731
                           and isinstance(t.get("name"), (str, int)) and _optional(t.get("probability"), _is_number))
        _need(_optional(record.get("prediction"), named), "'prediction' is not a class, a name and a probability")
        _need(isinstance(record.get("top5"), list) and all(named(t) for t in record["top5"]),
              "'top5' is not a list of classes with names and probabilities")


def _check_run(run: Run) -> None:
    """A UserError naming the run folder unless explore can read what it holds."""
    try:
        _check_record(run.kind, run.record, run.arrays)
    except (_Bad, TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
        what = str(exc) if isinstance(exc, _Bad) else f"{type(exc).__name__}: {exc}"
        raise UserError("'{path}' holds a {kind} run that explore cannot read: {what}",
                        path=run.path, kind=run.kind or "unknown", what=what.splitlines()[0][:300] if what else "") from None


# --- gathering the runs -------------------------------------------------------------------------


@dataclass
class Site:
    """Everything the pages show, gathered from the runs (and computed extras)."""

    model: dict
    label: str
    class_names: list[str]
    layers: list[dict] = field(default_factory=list)  # channels layers in model order
    classes: dict | None = None  # classes run images, by class
    images: list = field(default_factory=list)  # activations runs
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # computed per layer
    class_extra: dict | None = None
    dataset: object = None
    heldout: object = None
    types: dict = field(default_factory=dict)  # layer -> (type, output shape)
    logits_layer: str | None = None
    slugs: dict = field(default_factory=dict)  # layer -> its file-name part, unique in the site
    on_progress: object = None  # called with a line per stage (computing a layer, writing the pages)
    names: dict = field(default_factory=dict)  # how notes spell settings (the command line: as flags)
    pictures: dict = field(default_factory=dict)  # dataset index -> its picture's file, written once

    def progress(self, line: str) -> None:
        if self.on_progress is not None:
            self.on_progress(line)

    def texts(self, notes) -> list[str]:
        said = lambda why: why.render(self.names) if isinstance(why, Message) else str(why)  # noqa: E731
        return [f"{n[0]}{said(n[1])}{n[2]}" if isinstance(n, tuple) else said(n) for n in notes]

    def slug(self, layer: str) -> str:
        if layer not in self.slugs:
            self.slugs.update(unique_slugs([*self.slugs, layer]))
        return self.slugs[layer]

    def name(self, c: int) -> str:
        return self.class_names[c] if 0 <= c < len(self.class_names) else str(c)


def _note(before: str, why, after: str = "") -> tuple:
    """A note around ``why``, kept apart so that a Message's settings are spelled as the site's ``names`` say."""
    return (before, why, after)


def _given_class_names(record: dict) -> tuple | None:
    """The class names a run was given (run.json's repeat record of the load), None where it was given none."""
    repeat = record.get("repeat") if isinstance(record.get("repeat"), dict) else {}
    load = repeat.get("load") if isinstance(repeat.get("load"), dict) else {}
    meta = load.get("meta") if isinstance(load.get("meta"), dict) else {}
    names = meta.get("class_names")
    return tuple(map(str, names)) if isinstance(names, list) else None


def _read(run) -> Run:
    run = run if isinstance(run, Run) else load_run(run)
    _check_run(run)
    return run


def _gather(runs: Sequence, compute: bool, dataset=None, trust: bool = False, on_progress=None, names=None,
            device: torch.device | str = "cpu") -> Site:
    if on_progress is not None:
        on_progress(f"reading {len(runs)} run folder{'s' if len(runs) != 1 else ''}")
    runs = [_read(r) for r in runs]
    if not runs:
        raise UserError("explore needs at least one run folder")
    digests = {(r.record.get("model") or {}).get("checkpoint_sha256") or (r.record.get("model") or {}).get("name")
               for r in runs}
    if len(digests) > 1:
        raise UserError("the run folders hold runs of different models; explore joins runs of one model")
    if len({_given_class_names(r.record) for r in runs}) > 1:  # the site names classes as the first run's model does
        raise UserError("the run folders name the model's classes differently ({class_names} given to some of them, "
                        "or other names): explore joins runs whose class names agree", settings=("class_names",))
    _check_one_data([r for r in runs if r.kind == "channels"])
    first = runs[0].record
    if compute and on_progress is not None:
        on_progress("loading the model")
    loaded, why = load_recorded_model(first, trust) if compute else (None, None)
    flags = names or {}
    names = list(loaded.spec.class_names) if loaded is not None else []
    site = Site(model=first.get("model") or {}, label=(first.get("model") or {}).get("name") or "model", class_names=names,
                on_progress=on_progress, names=dict(flags))
    if why:
        site.notes.append(_note("Not computed (activation maps, histograms, attributions, confusions): ", why, "."))
    channels_runs = [r for r in runs if r.kind == "channels"]
    for run in channels_runs:
        _gather_channels(site, run)
    for run in (r for r in runs if r.kind == "classes"):
        names = names or [str(i["name"]) for i in sorted(run.record["images"], key=lambda i: i["class"])]
        about = {int(i["class"]): i for i in run.record["images"]}
        site.classes = {int(label): {"image": run.arrays["images"][i], "probability": float(run.arrays["probabilities"][i]),
                                     "logit": float(run.arrays["scores"][i]), **_runner_up(about.get(int(label)))}
                        for i, label in enumerate(run.arrays["labels"])}
    for run in (r for r in runs if r.kind == "activations"):
        site.images.append(run)
        if not names:
            names = [str(t["name"]) for t in sorted(run.record["top5"], key=lambda t: t["class"])]
    if loaded is not None:
        site.logits_layer = loaded.spec.logits_layer

        site.types = {i.name: (i.type, i.output_shape) for i in describe_layers(loaded.model, loaded.spec.input_shape)}
        order = list(site.types)
        site.layers.sort(key=lambda l: order.index(l["layer"]) if l["layer"] in order else len(order))
    width = max([len(site.class_names)] + [len(r.arrays.get("probabilities", [])) for r in site.images])
    site.class_names = names or [str(i) for i in range(width)]
    if site.classes:
        site.class_names += [str(i) for i in range(len(site.class_names), max(site.classes) + 1)]
    site.slugs = unique_slugs([l["layer"] for l in site.layers] + [n for r in site.images for n in r.record["layers"]])
    if dataset is not None:
        site.dataset = dataset
    if loaded is not None:
        loaded.model.to(device)  # a copy loaded for the site alone
        _compute(site, loaded, channels_runs)
    return site


def _runner_up(entry: dict | None) -> dict:
    """The runner-up class of a classes run's image record (its index, name and probability), where recorded."""
    entry = entry or {}
    runner, p = entry.get("runner_up"), entry.get("runner_up_probability")
    if not _is_int(runner) or not 0 <= runner < MAX_CLASSES:
        return {}
    name = entry.get("runner_up_name")
    return {"runner_up": int(runner), "runner_up_name": str(name) if isinstance(name, (str, int)) else str(runner),
            "runner_up_probability": _probability(p) if _is_number(p) else None}


def _check_one_data(channels_runs: Sequence) -> None:
    """Refuse channels runs whose real examples come from different data (another dataset, split or pictures
    folder): the site shows each channel's examples by their index in one dataset, so another's would be the wrong
    pictures."""
    used = {}
    for run in channels_runs:
        data = run.record.get("dataset")
        if isinstance(data, dict):
            what = (data.get("name"), data.get("split"), data.get("count"), recorded_images(run.record))
            used.setdefault(what, str(run.path))
    if len(used) > 1:
        (first, one), (second, other) = list(used.items())[:2]
        raise UserError("the channels runs '{one}' and '{other}' took their real examples from different data "
                        "({first} and {second}); explore joins runs over the same data: explore them separately",
                        one=one, other=other, first=_data_words(first), second=_data_words(second))


def _data_words(data: tuple) -> str:
    name, split, count, folder = data
    return f"{count} pictures of {folder}" if folder else f"{name} {split}, {count} images"


def _gather_channels(site: Site, run) -> None:
    arrays, record = run.arrays, run.record
    diverse = int(record.get("diverse") or 1)
    for layer in record["layers"]:
        if any(l["layer"] == layer["layer"] for l in site.layers):
            continue
        rows = np.flatnonzero(arrays["layers"] == layer["layer"])
        per, entries = {}, layer["per_channel"]
        flat = [e.get("saturates") for e in entries]
        if not all(isinstance(f, bool) for f in flat):  # a run recorded before the verdict was: from its images
            images = torch.from_numpy(arrays["images"][rows[:len(entries) * diverse]])  # as saved: uint8
            flat = saturates(images.view(len(entries), diverse, *images.shape[1:]),
                             torch.tensor([not e.get("not_reached") for e in entries], dtype=torch.bool)).tolist()
        for n, entry in enumerate(entries):
            idx = rows[n * diverse:(n + 1) * diverse]
            per[int(entry["channel"])] = {
                **entry, "channel": int(entry["channel"]), "images": arrays["images"][idx],
                "scores": arrays["scores"][idx].tolist(),
                "flat": bool(flat[n]),
                "examples": arrays["examples"][idx[0]].tolist() if "examples" in arrays else [],
                "example_values": arrays["example_activations"][idx[0]].tolist() if "example_activations" in arrays else [],
            }
        site.layers.append({**{k: v for k, v in layer.items() if k != "per_channel"}, "per": per, "diverse": diverse,
                            "neuron": bool(record.get("neuron")), "dataset": record.get("dataset"), "run": str(run.path),
                            "images": recorded_images(record)})


def _fits_layers(found, names, channel_lists, examples, classes: int):
    """A cached layers entry, checked against what this site asks for (ValueError: it does not fit, recompute).
    hist, low, high and active hold every channel of the layer; maps, inputs and outputs the channels asked for."""
    tensor = lambda v, ndim: isinstance(v, torch.Tensor) and v.ndim == ndim  # noqa: E731
    if not isinstance(found, dict):
        raise ValueError("not a dict of layers")
    for name in names:
        entry, wanted = found.get(name), channel_lists[name]
        count, every = len(wanted), max(wanted, default=-1) + 1
        if not (isinstance(entry, dict) and tensor(entry.get("hist"), 2) and entry["hist"].shape[1] == HISTOGRAM_BINS
                and all(tensor(entry.get(k), 2 if k == "hist" else 1) and len(entry[k]) >= every
                        for k in ("hist", "low", "high", "active"))
                and isinstance(entry.get("maps"), torch.Tensor) and tuple(entry["maps"].shape[:2]) == (count, examples[name].shape[1])
                and ("inputs" not in entry or (tensor(entry["inputs"], 2) and len(entry["inputs"]) == count))
                and ("outputs" not in entry or (tensor(entry["outputs"], 2) and tuple(entry["outputs"].shape) == (count, classes)))):
            raise ValueError(f"layer {name!r} does not fit the channels asked for")
    return found


def _fits_classes(found, names, heldout: int):
    """A cached classes entry, checked like :func:`_fits_layers`."""
    if not isinstance(found, dict) or not isinstance(found.get("confusion"), torch.Tensor):
        raise ValueError("not a dict with a confusion matrix")
    classes, k = found["confusion"].shape[0], min(CLASS_TOP, heldout)
    tensor = lambda v, shape: isinstance(v, torch.Tensor) and tuple(v.shape) == shape  # noqa: E731
    top = found.get("top")
    if not (tensor(found["confusion"], (classes, classes)) and tensor(top, (classes, k)) and not top.is_floating_point()
            and (top.numel() == 0 or (int(top.min()) >= 0 and int(top.max()) < heldout))
            and tensor(found.get("top_scores"), (classes, k)) and isinstance(found.get("channels"), dict)
            and set(found["channels"]) == set(names)
            and all(isinstance(v, torch.Tensor) and v.ndim == 2 and v.shape[0] == classes for v in found["channels"].values())):
        raise ValueError("it does not fit the classes asked for")
    return found


def _compute(site: Site, loaded, channels_runs) -> None:
    with_data = [l for l in site.layers if l["dataset"]]
    if with_data:
        info, folder = with_data[0]["dataset"], with_data[0]["images"]
        data = site.dataset
        if data is None or (data.name, data.split) != (info["name"], info["split"]):
            site.progress(f"loading the images of {folder}" if folder else f"loading the {info['name']} {info['split']} data")
            data, why = load_images(folder, loaded.spec) if folder else load_data(info["name"], info["split"])
            if why:
                site.notes.append(_note("Not computed: ", why, "."))
        if data is not None and len(data) == info["count"]:
            site.dataset = data
            groups: dict[bool, list] = {}
            for layer in with_data:
                groups.setdefault(layer["neuron"], []).append(layer)
            for neuron, group in groups.items():
                names = [l["layer"] for l in group]
                examples = {l["layer"]: np.array([l["per"][c]["examples"] for c in sorted(l["per"])]) for l in group}
                channel_lists = {l["layer"]: sorted(l["per"]) for l in group}
                for l in group:
                    site.progress(f"computing layer {l['layer']} ({len(l['per'])} channels, {len(data)} images)")
                key = {"what": "layers", "model": loaded.sha256, "data": data.digest(), "layers": names,
                       "neuron": neuron, "examples": {n: e.tolist() for n, e in examples.items()}, "v": 2}
                try:
                    found = cached(cache_path("explore", key),
                                   lambda: compute_layers(loaded, data, names, examples, channel_lists, neuron),
                                   load=lambda path: _fits_layers(torch_load(path), names, channel_lists, examples,
                                                                  loaded.spec.num_classes),
                                   notes=site.notes)
                except Exception as exc:  # noqa: BLE001
                    site.notes.append(_note(f"Not computed for {', '.join(names)}: ", f"{type(exc).__name__}: {exc}", "."))
                    continue
                for name in names:
                    site.extra[name] = {"channels": channel_lists[name], **found[name]}
        elif data is not None:
            site.notes.append(_note("Not computed: ", f"the data ({len(data)} images) differs in size from the "
                                                      f"{info['count']} images the run used", "."))
    heldout, why = load_data(loaded.spec.dataset, "test")
    if heldout is None and not loaded.spec.dataset:
        site.notes.append(_note("", "No real images or confusions on the class pages: the model has no built-in "
                                    "dataset to take a held-out split from", "."))
        return
    if heldout is None:
        site.notes.append(_note("No class pages' real images or confusions: ", why, "."))
        return
    site.progress(f"computing the class pages ({len(heldout)} held-out images)")
    site.heldout = heldout
    names = [l["layer"] for l in site.layers]
    key = {"what": "classes", "model": loaded.sha256, "data": heldout.digest(), "layers": names, "v": 1}
    try:
        site.class_extra = cached(cache_path("explore", key), lambda: compute_classes(loaded, heldout, names),
                                  load=lambda path: _fits_classes(torch_load(path), names, len(heldout)),
                                  notes=site.notes)
    except Exception as exc:  # noqa: BLE001
        site.notes.append(_note("Class pages not computed: ", f"{type(exc).__name__}: {exc}", "."))


# --- the site folder ----------------------------------------------------------------------------


def safe_name(name) -> bool:
    """True for a relative path of plain parts (no ``..``, no absolute path, no backslash, no marker or build
    folder) — the only names a site writes or, read from a marker, removes."""
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name or name.startswith("/"):
        return False
    parts = name.split("/")
    return (len(parts) <= 4 and all(part not in ("", ".", "..") for part in parts)
            and parts[0] != MARKER and not parts[0].startswith(BUILD_PREFIX))


def _target(folder: Path, name: str) -> Path:
    """``folder / name`` for a name the site derived: refused (a bug, or data that got past the slugs) unless
    it stays in ``folder``."""
    if not safe_name(name):
        raise RuntimeError(f"the site would write outside its folder: {name!r}")
    return folder / name


def _folder_error(out: Path, exc: OSError) -> UserError:
    if exc.errno == errno.ENAMETOOLONG:
        return UserError("{out} '{path}': name too long; name a shorter folder", settings=("out",), path=out)
    return UserError("{out} '{path}' cannot be used ({strerror}); name another folder",
                     settings=("out",), path=out, strerror=exc.strerror or exc)


def _check_writable(out: Path, folder: Path | None) -> None:
    """Refuse, before any computing, an ``out`` whose ``folder`` (itself, or the nearest existing folder above a new
    one) this process may not write into."""
    if folder is not None and not os.access(folder, os.W_OK | os.X_OK):
        raise UserError("{out} '{path}' cannot be written: '{folder}' is not writable; name another folder",
                        settings=("out",), path=out, folder=folder)


def _site_files(out: Path) -> list[str] | None:
    """The files introspect wrote into ``out`` (from its marker), None when ``out`` is new or empty; a UserError
    when it is a file, lies below one, or is a folder introspect did not make that is not empty."""
    try:
        if not out.exists():
            if out.is_symlink():
                raise UserError("{out} '{path}' is a broken link; name a folder", settings=("out",), path=out)
            parent = next((p for p in out.absolute().parents if p.exists()), None)
            if parent is not None and not parent.is_dir():
                raise UserError("cannot create {out} '{path}': '{parent}' is a file", settings=("out",), path=out,
                                parent=parent)
            _check_writable(out, parent)
            return None
        if not out.is_dir():
            raise UserError("{out} '{path}' is an existing file; name a folder", settings=("out",), path=out)
        _check_writable(out, out)
        marker = out / MARKER
        if marker.is_file() and not marker.is_symlink():
            try:
                listed = json.loads(marker.read_text()).get("files")
            except (ValueError, UnicodeDecodeError, AttributeError, RecursionError):
                listed = []
            return [name for name in listed if safe_name(name)] if isinstance(listed, list) else []
        if holds_run(out):
            raise UserError("{out} '{path}' is a run folder: explore writes a site into a new or empty folder or a "
                            "site it made (a run's own site is its site/ folder); name another folder",
                            settings=("out",), path=out)
        if any(out.iterdir()):
            raise UserError("{out} '{path}' is a folder introspect did not make (no {marker} in it) and not empty: "
                            "explore writes only into a new or empty folder or a site it made; name another folder",
                            settings=("out",), path=out, marker=MARKER)
        return None
    except OSError as exc:
        raise _folder_error(out, exc) from exc


def _write_marker(out: Path, files) -> None:
    temporary = out / f"{MARKER}.tmp{os.getpid()}"
    temporary.write_text(json.dumps({"made_by": "introspect explore", "files": sorted(files)}, indent=0) + "\n")
    os.replace(temporary, out / MARKER)


def _folder_in(out: Path, name: str, create: bool) -> bool:
    """Whether each folder between ``out`` and the file ``name`` is a real folder (no link, no file), creating
    the missing ones with ``create``."""
    current = out
    for part in name.split("/")[:-1]:
        current = current / part
        if current.is_symlink() or (current.exists() and not current.is_dir()):
            return False
        if not current.exists():
            if not create:
                return False
            current.mkdir()
    return True


def _commit_order(name: str) -> tuple:
    """Assets and data first, pages next, index.html last: a page is moved in only after what it shows."""
    return name == "index.html", name.endswith(".html"), name


def _commit(build: Path, out: Path, previous: list[str]) -> None:
    """Move the site built in ``build`` into ``out``: assets and data first, pages next, index.html last; then
    remove the files of the earlier site that the new one does not have. The marker lists both until then, so an
    interruption leaves every file introspect made listed, and no page whose files were removed."""
    files = sorted(str(p.relative_to(build).as_posix()) for p in build.rglob("*") if p.is_file())
    earlier = set(previous)
    foreign = [f for f in files if f not in earlier and os.path.lexists(out / f)]
    if foreign:
        raise UserError("{out} '{path}' holds '{name}', which introspect did not write there; move it or name another "
                        "folder", settings=("out",), path=out, name=foreign[0])
    _write_marker(out, earlier | set(files))
    tops = sorted({f.split("/")[0] for f in files}, key=_commit_order)
    if not earlier and not any(os.path.lexists(out / top) for top in tops):
        # a new site (a run's, say): its folders move whole, hundreds of pictures each, and the pages after them
        for top in tops:
            os.replace(build / top, out / top)
        return  # the marker lists them already
    for name in sorted(files, key=_commit_order):
        if not _folder_in(out, name, create=True):
            raise UserError("{out} '{path}': '{name}' lies in something that is not a folder (a link or a file); "
                            "remove it or name another folder", settings=("out",), path=out, name=name)
        if (out / name).is_dir() and not (out / name).is_symlink():
            raise UserError("{out} '{path}': '{name}' is a folder where the site writes a file; remove it or name "
                            "another folder", settings=("out",), path=out, name=name)
        os.replace(build / name, out / name)
    folders = set()
    for name in sorted(earlier - set(files)):
        if _folder_in(out, name, create=False) and ((out / name).is_symlink() or (out / name).is_file()):
            (out / name).unlink()
            folders.update(str(Path(name).parents[i]) for i in range(len(Path(name).parents) - 1))
    for folder in sorted(folders, key=lambda f: -f.count("/")):
        with contextlib.suppress(OSError):
            (out / folder).rmdir()  # only when empty
    _write_marker(out, files)


def build_site(runs: Sequence, out: str | Path, *, compute: bool = True, dataset=None, trust: bool = False,
               on_progress=None, names: dict | None = None, device: torch.device | str = "cpu") -> Path:
    """Write the site of ``runs`` (run folders or :class:`~introspect.folders.Run`s of one model) into ``out``:
    a new or empty folder, or a site introspect made (whose files are replaced; other files are kept).
    ``on_progress`` is called with a line per stage ("computing layer conv2 (64 channels, 60000 images)",
    "writing 130 pages"); ``names`` spells settings in the pages' notes (as ``Message.render``: the command line
    passes its flags); ``device`` is where the maps, histograms and attributions are computed."""
    out = Path(out)
    previous = _site_files(out)
    site = _gather(runs, compute, dataset, trust, on_progress, names, device)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if previous is None:
            _write_marker(out, [])
        for stale in out.glob(BUILD_PREFIX + "*"):  # left by an interrupted build
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
        build = out / f"{BUILD_PREFIX}{os.getpid()}"
        build.mkdir()
    except OSError as exc:
        raise _folder_error(out, exc) from exc
    try:
        _write_site(site, build)
        try:
            _commit(build, out, previous or [])
        except OSError as exc:
            raise _folder_error(out, exc) from exc
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return out


# --- writing the site ---------------------------------------------------------------------------


def page_html(title: str, script: str, base: str = "") -> str:
    """A page of the site: its data script (``data/<page>.js``), then explore.js, which draws it. With ``base``
    (a folder, "site/") every relative link, image and script of the page resolves inside that folder: the page
    works from another folder, from file:// with no server."""
    where = f"<base href=\"{html.escape(base)}\">" if base else ""
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">" + where
            + "<meta name=\"viewport\" content=\"width=device-width\"><link rel=\"icon\" href=\"data:,\">"
            f"<title>{html.escape(title)}</title><link rel=\"stylesheet\" href=\"explore.css\"></head>\n"
            "<body><main id=\"main\"><noscript>This page needs JavaScript; <a href=\"index.html\">the explorer's "
            "index</a> lists its pages.</noscript></main>\n"
            f"<script src=\"{html.escape(script)}\"></script><script src=\"explore.js\"></script></body></html>\n")


def run_index(site: Path, kind: str | None) -> str:
    """A run folder's index.html: the page of its ``site`` folder that shows the run's pictures, drawn from the
    run folder (links and images resolve inside site/): a classes run's grid of class images with p and
    runner-up, an activations run's image with its prediction and maps, a channels run's grid of every channel
    (one layer) or each layer's strongest channels (several layers)."""
    layers = sorted(site.glob("layer-*.html"))
    page = {"classes": "classes.html", "activations": "image-0.html"}.get(kind or "", "index.html")
    if kind == "channels" and len(layers) == 1:
        page = layers[0].name
    if not (site / page).is_file():
        page = "index.html"
    return page_html(f"{kind or 'run'} run", f"data/{page[:-5]}.js", base=f"{site.name}/")


def _write_script(out: Path, name: str, before: str, data: dict, after: str = "") -> None:
    """A data script: ``before``, ``data`` as JSON, ``after``."""
    _target(out, name).parent.mkdir(parents=True, exist_ok=True)
    _target(out, name).write_text(before + json.dumps(data, separators=(",", ":"), default=float) + after + ";\n")


def _write_page(out: Path, name: str, title: str, data: dict) -> None:
    script = f"data/{name[:-5]}.js"
    _write_script(out, script, "window.PAGE = ", data)
    _target(out, name).write_text(page_html(title, script))


#: Feature maps shown per layer on an image page (its strongest channels; the others are listed by value).
IMAGE_MAPS = 16


def _magma(scaled: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (clipped) as (H, W, 3) uint8 through matplotlib's magma (the pages' colour bars match)."""
    from matplotlib import colormaps

    return (colormaps["magma"](np.clip(scaled, 0, 1))[..., :3] * 255).astype(np.uint8)


#: A one-row colour map (a 1-D layer's activations, a signal's saliency) is drawn this many pixels tall.
STRIP_PX = 24
#: While ``_write_site`` runs: the threads that encode its PNGs (PIL lets go of the GIL while it compresses, so
#: thousands of thumbnails encode on every core), and what they were handed.
_ENCODING: tuple | None = None


def _png(out: Path, name: str, array: np.ndarray) -> None:
    """A uint8 picture as a PNG (on the encoding threads while ``_encoding_in_parallel`` runs); a one-row one (a 1-D
    signal, of any number of channels) as a waveform picture with axes, a one-row colour map as a strip STRIP_PX
    tall: a 1-pixel strip is invisible on a page."""
    target = _target(out, name)
    if array.ndim == 3 and array.shape[-1] != 3 and array.shape[0] > 1 and array.shape[1] == 1 and array.shape[2] > 1:
        from .report import save_signal_png  # a signal of several channels (C, 1, L): a line each, as on the report

        save_signal_png(target, np.transpose(array, (1, 2, 0)).astype(np.float32) / 255)
        return
    if array.ndim == 3 and array.shape[-1] != 3:  # (C, H, W): its channels as drawn (``shown_channels``)
        array = shown_channels(array)
        array = array[0] if array.shape[0] == 1 else np.transpose(array, (1, 2, 0))
    if array.shape[0] == 1 and array.shape[1] > 1:
        if array.ndim == 2:
            from .report import save_signal_png

            save_signal_png(target, array.astype(np.float32) / 255)  # matplotlib: on this thread
            return
        array = np.repeat(array, STRIP_PX, axis=0)
    if _ENCODING is None:
        save_png(target, array)
    else:
        pool, pending = _ENCODING
        pending.append(pool.submit(save_png, target, np.array(array, copy=True)))


@contextlib.contextmanager
def _encoding_in_parallel() -> Iterator[None]:
    """PNGs written by ``_png`` meanwhile are encoded on a pool of threads; all are written (or the first error
    raised) before it ends."""
    global _ENCODING
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        pending: list = []
        _ENCODING = (pool, pending)
        try:
            yield
        finally:
            _ENCODING = None
            for future in pending:
                future.result()


def _num(value) -> float | None:
    value = None if value is None else float(value)
    return None if value is None or not np.isfinite(value) else round(value, 4)


def _probability(value) -> float | None:
    """A probability unrounded (None where not finite): the pages print 1.000 only when it is exactly 1, as the
    PNG tiles do (rounded to 4 places 0.99996 would read 1.000 on one page and >0.999 on another)."""
    value = None if value is None else float(value)
    return value if value is not None and np.isfinite(value) else None


def _top(values: torch.Tensor, count: int = 8) -> list[tuple[int, float]]:
    order = torch.argsort(values, descending=True)[:count]
    return [(int(i), _num(values[i])) for i in order]


def _write_site(site: Site, out: Path) -> None:
    with _encoding_in_parallel():
        _write_pages(site, out)


def _write_pages(site: Site, out: Path) -> None:
    for asset in ("explore.js", "explore.css"):
        shutil.copyfile(ASSETS / asset, out / asset)
    class_pages = _class_pages(site)
    count = 1 + len(site.layers) + sum(len(l["per"]) for l in site.layers) + len(site.images) + len(class_pages) \
        + bool(class_pages)
    site.progress(f"writing {count} pages")
    classes = [_class_row(site, c) for c in class_pages]
    layer_rows = [_write_layer(out, site, layer, class_pages) for layer in site.layers]
    image_rows = [_write_image(out, site, run, n, class_pages) for n, run in enumerate(site.images)]
    for c in class_pages:
        _write_class(out, site, c, class_pages)
    if class_pages:
        _write_page(out, "classes.html", f"{site.label}: classes",
                    {"kind": "classes", "title": f"{site.label}: classes", "classes": classes,
                     "notes": site.texts(site.notes)})
    _write_page(out, "index.html", f"{site.label}: explorer",
                {"kind": "model", "title": site.label, "model": site.model, "layers": layer_rows,
                 "images": image_rows, "notes": site.texts(site.notes), "classes": classes,
                 "classes_href": "classes.html" if class_pages else None})


def _class_row(site: Site, c: int) -> dict:
    """A class as the index and the classes page show it: its optimized image (where a classes run made one)
    with p and the runner-up."""
    row = {"class": c, "name": site.name(c), "href": f"class-{c}.html", "thumb": None}
    if site.classes and c in site.classes:
        found = site.classes[c]
        row.update(thumb=f"img/class-{c}.png", probability=_probability(found["probability"]), logit=_num(found["logit"]))
        if "runner_up" in found:
            row.update(runner_up=found["runner_up_name"], runner_up_probability=found["runner_up_probability"],
                       runner_up_href=f"class-{found['runner_up']}.html" if found["runner_up"] in site.classes else None)
    return row


def _class_pages(site: Site) -> list[int]:
    classes = set(site.classes or {})
    if site.class_extra is not None:
        classes |= set(range(site.class_extra["confusion"].shape[0]))
    return sorted(c for c in classes if c < len(site.class_names))


def _layer_stats(layer: dict, extra: dict | None) -> tuple[list[dict], dict]:
    """Each channel's row (ratio, share active, labels) and the layer's counts."""
    rows = []
    for i, c in enumerate(sorted(layer["per"])):
        entry = layer["per"][c]
        share = float(extra["active"][c]) if extra else entry.get("active_share")
        dead = bool(entry.get("dead")) or (share == 0.0)
        rare = not dead and share is not None and share < RARE_SHARE
        reached = max(entry["scores"]) > 0
        rows.append({"c": c, "ratio": None if (dead or rare or not reached) else _num(entry.get("ratio")), "active": _num(share),
                     "dead": dead, "rare": rare, "reached": reached, "best": _num(entry.get("activation")),
                     "flat": bool(entry.get("flat"))})
    ratios = [r["ratio"] for r in rows if r["ratio"] is not None]
    counts = {"channels": len(rows), "dead": sum(r["dead"] for r in rows), "rare": sum(r["rare"] for r in rows),
              "not_reached": sum(not r["reached"] for r in rows), "flat": sum(r["flat"] for r in rows),
              "median_ratio": _num(float(np.median(ratios))) if ratios else None}
    counts["live"] = counts["channels"] - counts["dead"] if layer["dataset"] else None
    if not layer["dataset"]:
        counts["dead"] = None
    return rows, counts


def _rank(row: dict) -> tuple:
    """A channel's rank among the strongest (lowest first): informative before flat (saturating) ones, then by
    ratio, channels without one after, then by optimized activation."""
    return (row["flat"], row["ratio"] is None, -(row["ratio"] or 0), -(row["best"] or 0), row["c"])


def _flat_hint(site: Site, layer: dict) -> str | None:
    """What to try for a layer's flat channels: neuron mode (one position maximized), unless the run used it."""
    if layer["neuron"]:
        return None
    return site.texts([Message("Neuron mode ({neuron}: one position maximized instead of the map's mean) shows a "
                               "localized pattern", settings=("neuron",))])[0]


def _write_layer(out: Path, site: Site, layer: dict, class_pages: list[int]) -> dict:
    name = layer["layer"]
    extra = site.extra.get(name)
    rows, counts = _layer_stats(layer, extra)
    folder = f"img/layer-{site.slug(name)}"
    for row in rows:
        entry = layer["per"][row["c"]]
        for j, image in enumerate(entry["images"]):
            _png(out, f"{folder}/{row['c']}{'' if j == 0 else f'-{j}'}.png", image)
        row["href"] = channel_page(site.slug(name), row["c"])
        if name == site.logits_layer and row["c"] < len(site.class_names):
            row["name"] = site.class_names[row["c"]]
        row["thumb"] = f"{folder}/{row['c']}.png"
    kind, shape = site.types.get(name, (None, None))
    measured = layer.get("measured_at") if isinstance(layer.get("measured_at"), str) else None
    summary = {"layer": name, "href": f"layer-{site.slug(name)}.html", "type": kind,
               "shape": [int(n) for n in shape] if shape else None, "measured_at": measured,
               **counts, "first": rows[0]["thumb"] if rows else None, "dataset": bool(layer["dataset"])}
    index = {n: i for i, n in enumerate(l["layer"] for l in site.layers)}
    previous = site.layers[index[name] - 1] if index[name] > 0 else None
    shared = {"kind": "channel", "layer": name, "layer_href": summary["href"], "neuron": layer["neuron"],
              "notes": site.texts(site.notes), "measured_at": summary["measured_at"],
              "dataset": layer["dataset"]["name"] if layer["dataset"] else None, "rare_share": RARE_SHARE,
              "flat_hint": _flat_hint(site, layer)}
    blocks: dict[int, dict] = {}
    for i, row in enumerate(rows):
        data = _channel_data(out, site, layer, extra, row, rows[i - 1] if i else None,
                             rows[i + 1] if i + 1 < len(rows) else None, previous, class_pages, shared)
        blocks.setdefault(row["c"] // CHANNEL_BLOCK, {})[row["c"]] = data
        row["examples"] = [{"src": e["src"], "value": e["value"]} for e in data["examples"][:3]]
    for block, channels in blocks.items():
        _write_script(out, channel_block(site.slug(name), block),
                      "window.CHANNELS = Object.assign(window.CHANNELS || {}, ", channels, ")")
    _write_page(out, f"channel-{site.slug(name)}.html", f"{site.label}: {name} channels",
                {**shared, "title": f"{site.label}: layer {name} channels", "block": CHANNEL_BLOCK,
                 "blocks": {k: channel_block(site.slug(name), k) for k in blocks}, "first": rows[0]["c"] if rows else None})
    strongest = sorted((r for r in rows if not r["dead"] and not r["rare"]), key=_rank)
    summary["strip"] = [{"c": r["c"], "thumb": r["thumb"], "href": r["href"], "ratio": r["ratio"], "best": r["best"],
                         "flat": r["flat"]} for r in strongest[:8]]
    _write_page(out, summary["href"], f"{site.label}: {name}",
                {"kind": "layer", "title": f"{site.label}: layer {name}", "summary": summary, "channels": rows,
                 "rare_share": RARE_SHARE, "notes": site.texts(site.notes), "flat_hint": _flat_hint(site, layer)})
    return summary


def _channel_data(out: Path, site: Site, layer: dict, extra: dict | None, row: dict, before: dict | None,
                  after: dict | None, previous: dict | None, class_pages: list[int], shared: dict) -> dict:
    """What a channel's page shows beyond its layer's ``shared`` fields (its real images written meanwhile)."""
    name, c = layer["layer"], row["c"]
    entry = layer["per"][c]
    named = f" (class {row['name']})" if "name" in row else ""
    data = {"title": f"{site.label}: {name} channel {c}{named}", "channel": c, "row": dict(row),
            "optimized": [{"src": f"img/layer-{site.slug(name)}/{c}{'' if j == 0 else f'-{j}'}.png", "activation": _num(s)}
                          for j, s in enumerate(entry["scores"])],
            "prev": before and before["href"], "next": after and after["href"],
            "examples": [], "hist": None, "inputs": [], "outputs": []}
    dataset = site.dataset
    if entry["examples"] and dataset is not None and not row["dead"]:
        maps = extra["maps"][extra["channels"].index(c)].float().numpy() if extra else None
        for j, (index, value) in enumerate(zip(entry["examples"], entry["example_values"])):
            picture = dataset.images[index].numpy()
            activation_map = maps[j] if maps is not None and maps.ndim == 3 else None
            if activation_map is None:  # the picture alone: one file per dataset image, however many channels show it
                src = site.pictures.get(index)
                if src is None:
                    src = site.pictures[index] = f"img/data/{index}.png"
                    _png(out, src, overlay(picture, None))
            else:
                src = f"img/layer-{site.slug(name)}/{c}-ex{j}.png"
                _png(out, src, overlay(picture, activation_map, mark=layer["neuron"]))
            data["examples"].append({"src": src, "index": index, "value": _num(value),
                                     "label": _label(site, dataset, int(dataset.labels[index])),
                                     "peak": None if activation_map is None else _num(max(float(activation_map.max()), 0.0))})
        if extra is None:
            data["notes"] = [*shared["notes"], "Real examples shown without activation maps (not computed)."]
    if extra is not None:
        k = extra["channels"].index(c)
        data["hist"] = histogram_page(extra["hist"][c], extra["low"][c], extra["high"][c], row["best"])  # every channel's
        if "inputs" in extra and previous is not None:
            prev_name = previous["layer"]
            data["inputs"] = [{"layer": prev_name, "channel": i, "value": v,
                               "href": channel_page(site.slug(prev_name), i) if i in previous["per"] else None,
                               "thumb": f"img/layer-{site.slug(prev_name)}/{i}.png" if i in previous["per"] else None}
                              for i, v in _top(extra["inputs"][k])]
        if "outputs" in extra:
            data["outputs"] = [{"class": j, "name": site.name(j), "value": v,
                                "href": f"class-{j}.html" if j in class_pages else None}
                               for j, v in _top(extra["outputs"][k], 5)]
    return data


def _label(site: Site, dataset, label: int) -> str | None:
    """A real image's label: the model's class for a built-in dataset, the sub-folder for the user's pictures
    (None when they lie in one folder: no sub-folders, nothing to tell them apart)."""
    names = getattr(dataset, "class_names", None)
    if dataset is not None and dataset.split == "all":
        return str(names[label]) if names and len(names) > 1 and 0 <= label < len(names) else None
    return site.name(label)


def _write_class(out: Path, site: Site, c: int, class_pages: list[int]) -> None:
    data = {"kind": "class", "title": f"{site.label}: class {site.name(c)}", "class": c,
            "name": site.name(c), "notes": site.texts(site.notes), "image": None, "top": [], "confusions": [],
            "channels": [], "prev": f"class-{class_pages[class_pages.index(c) - 1]}.html" if class_pages.index(c) else None,
            "next": f"class-{class_pages[class_pages.index(c) + 1]}.html" if c != class_pages[-1] else None}
    if site.classes and c in site.classes:
        _png(out, f"img/class-{c}.png", site.classes[c]["image"])
        data["image"] = {"src": f"img/class-{c}.png", **{k: v for k, v in _class_row(site, c).items()
                                                           if k not in ("thumb", "href", "class", "name")}}
    extra = site.class_extra
    if extra is not None:
        for j, (index, score) in enumerate(zip(extra["top"][c].tolist(), extra["top_scores"][c].tolist())):
            src = f"img/class-{c}-top{j}.png"
            _png(out, src, site.heldout.images[index].numpy())
            label = int(site.heldout.labels[index])
            data["top"].append({"src": src, "index": index, "score": _num(score), "label": site.name(label)})
        row = extra["confusion"][c]
        total = int(row.sum())
        data["heldout"] = {"count": total, "correct": int(row[c]), "source": site.heldout.source}
        data["confusions"] = [{"class": j, "name": site.name(j), "count": int(row[j]),
                               "as_this": int(extra["confusion"][j, c]), "href": f"class-{j}.html"}
                              for j in torch.argsort(row + extra["confusion"][:, c], descending=True).tolist()
                              if j != c and (row[j] or extra["confusion"][j, c])][:5]
        pages = {l["layer"]: l for l in site.layers}
        for layer, values in extra["channels"].items():
            data["channels"] += [{"layer": layer, "channel": i, "value": v, "href": channel_page(site.slug(layer), i),
                                  "thumb": f"img/layer-{site.slug(layer)}/{i}.png"}
                                 for i, v in _top(values[c], 4) if i in pages[layer]["per"]]
    _write_page(out, f"class-{c}.html", data["title"], data)


def _write_image(out: Path, site: Site, run, n: int, class_pages: list[int]) -> dict:
    arrays, record = run.arrays, run.record
    base = f"img/image-{n}"
    _png(out, f"{base}/input.png", (np.clip(arrays["input"], 0, 1) * 255).round().astype(np.uint8))
    saliency = arrays["saliency"]
    shown_saliency = np.nan_to_num(saliency[0] if saliency.shape[0] == 1 else np.abs(saliency).max(0))
    signed = saliency.shape[0] == 1
    _png(out, f"{base}/saliency.png", colored(shown_saliency, "RdBu_r", symmetric=signed))
    edge = float(np.abs(shown_saliency).max())
    saliency_scale = {"map": "rdbu", "low": _num(-edge if signed else shown_saliency.min()),
                      "high": _num(edge if signed else shown_saliency.max())}
    pages = {l["layer"]: l for l in site.layers}
    logits_layer = site.logits_layer or list(record["layers"])[-1]
    layers = []
    for layer, info in record["layers"].items():
        values = torch.as_tensor(arrays[layer])
        shown = ACTIVATION_FUNCTIONS[info["activation_shown"]](values)
        channels = []
        if shown.ndim == 2:  # tokens (N, D): each unit's mean over the tokens, as channels are measured
            shown = shown.mean(0)
        strength = shown.mean((1, 2)) if shown.ndim == 3 else shown
        limit = max(float(torch.nan_to_num(shown).max()), 0.0) or 1.0
        for rank, ch in enumerate(torch.argsort(strength, descending=True).tolist()):
            item = {"channel": ch, "value": _num(strength[ch]),
                    "href": channel_page(site.slug(layer), ch) if layer in pages and ch in pages[layer]["per"] else None}
            if shown.ndim == 3 and rank < IMAGE_MAPS:
                item["src"] = f"{base}/{site.slug(layer)}-{ch}.png"
                _png(out, item["src"], _magma(np.nan_to_num(shown[ch].numpy()) / limit))
            if shown.ndim == 1 and layer == logits_layer and len(shown) == len(site.class_names):
                item["name"] = site.class_names[ch]
            channels.append(item)
        layers.append({"layer": layer, "shape": info["shape"], "activation": info["activation_shown"], "channels": channels,
                       "scale": {"map": "magma", "low": 0.0, "high": _num(limit)} if shown.ndim == 3 else None,
                       "href": f"layer-{site.slug(layer)}.html" if layer in pages else None})
    prediction = record["prediction"]
    href = f"image-{n}.html"
    data = {"kind": "image", "title": f"{site.label}: {record['input']['source']}", "input": record["input"],
            "prediction": None if prediction is None else {
                **prediction, "href": f"class-{prediction['class']}.html" if prediction["class"] in class_pages else None},
            "top5": record["top5"], "input_src": f"{base}/input.png", "saliency_src": f"{base}/saliency.png",
            "saliency_scale": saliency_scale, "saliency_signed": signed,
            "layers": layers, "notes": site.texts(site.notes)}
    _write_page(out, href, data["title"], data)
    return {"href": href, "source": record["input"]["source"], "thumb": f"{base}/input.png",
            "prediction": prediction["name"] if prediction else "no prediction (logits unknown)",
            "probability": _probability(prediction["probability"]) if prediction else None}
