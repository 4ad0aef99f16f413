"""A static web site from run folders of one model: model, layer, channel, class and image pages.

``build_site(runs, out)`` writes ``index.html``, one HTML page per layer, channel, class and
image, ``data/*.js`` (each page's data, loaded by a ``<script>`` tag: no fetch, so the site
works from file://), PNGs under ``img/`` and the shared ``explore.js``/``explore.css``.
With ``compute=True`` what the runs lack (see ``introspect.explore``) is computed from the
recorded model and dataset and cached under ``cache_dir()/explore``; when they cannot be
loaded the pages say so.
"""
from __future__ import annotations

import html
import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .cache import cache_path, cached
from .channels import HISTOGRAM_EDGES, RARE_SHARE
from .encoding import colored, overlay, save_png
from .errors import UserError
from .explore import compute_classes, compute_layers, load_data, load_recorded_model
from .folders import Run, load_run
from .layers import describe_layers
from .objectives import ACTIVATION_FUNCTIONS

ASSETS = Path(__file__).with_name("explore_assets")
#: A run folder's index.html: opens its site/.
OPEN_SITE = ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\">"
             "<meta http-equiv=\"refresh\" content=\"0; url=site/index.html\"><title>explorer</title></head>"
             "<body><a href=\"site/index.html\">open the explorer</a></body></html>\n")


def slug(name: str) -> str:
    """A layer name as a file-name part."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "_"


def channel_page(layer: str, channel: int) -> str:
    return f"channel-{slug(layer)}-{channel}.html"


def histogram_page(counts: torch.Tensor, low: float, high: float) -> dict:
    """A channel's histogram (counts per bin of channels.HISTOGRAM_EDGES) for its page: the bins from the
    first to the last non-empty one, each with its lower and upper edge (None: unbounded; the first bin
    of all holds values <= 0, the last values >= the top edge), and the lowest and highest activation."""
    edges = HISTOGRAM_EDGES.tolist()
    lower, upper = [None, 0.0, *edges], [0.0, *edges, None]
    filled = torch.nonzero(counts).flatten().tolist() or [0]
    first, last = filled[0], filled[-1] + 1
    return {"counts": counts[first:last].tolist(), "lower": lower[first:last], "upper": upper[first:last],
            "low": _num(low), "high": _num(high)}


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


def _gather(runs: Sequence, compute: bool, dataset=None, trust: bool = False) -> Site:
    runs = [r if isinstance(r, Run) else load_run(r) for r in runs]
    if not runs:
        raise UserError("explore needs at least one run folder")
    digests = {(r.record.get("model") or {}).get("checkpoint_sha256") or (r.record.get("model") or {}).get("name")
               for r in runs}
    if len(digests) > 1:
        raise UserError("the run folders hold runs of different models; explore joins runs of one model")
    first = runs[0].record
    loaded, why = load_recorded_model(first, trust) if compute else (None, None)
    names = list(loaded.spec.class_names) if loaded is not None else []
    site = Site(model=first.get("model") or {}, label=(first.get("model") or {}).get("name", "model"), class_names=names)
    if why:
        site.notes.append(f"Not computed (activation maps, histograms, attributions, confusions): {why}.")
    channels_runs = [r for r in runs if r.kind == "channels"]
    for run in channels_runs:
        _gather_channels(site, run)
    for run in (r for r in runs if r.kind == "classes"):
        names = names or [str(i["name"]) for i in sorted(run.record["images"], key=lambda i: i["class"])]
        site.classes = {int(label): {"image": run.arrays["images"][i], "probability": float(run.arrays["probabilities"][i]),
                                     "logit": float(run.arrays["scores"][i])}
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
    if dataset is not None:
        site.dataset = dataset
    if loaded is not None:
        _compute(site, loaded, channels_runs)
    return site


def _gather_channels(site: Site, run) -> None:
    arrays, record = run.arrays, run.record
    diverse = int(record.get("diverse") or 1)
    for layer in record["layers"]:
        if any(l["layer"] == layer["layer"] for l in site.layers):
            continue
        rows = np.flatnonzero(arrays["layers"] == layer["layer"])
        per = {}
        for n, entry in enumerate(layer["per_channel"]):
            idx = rows[n * diverse:(n + 1) * diverse]
            per[entry["channel"]] = {
                **entry, "images": arrays["images"][idx], "scores": arrays["scores"][idx].tolist(),
                "examples": arrays["examples"][idx[0]].tolist() if "examples" in arrays else [],
                "example_values": arrays["example_activations"][idx[0]].tolist() if "example_activations" in arrays else [],
            }
        site.layers.append({**{k: v for k, v in layer.items() if k != "per_channel"}, "per": per, "diverse": diverse,
                            "neuron": bool(record.get("neuron")), "dataset": record.get("dataset"), "run": str(run.path)})


def _compute(site: Site, loaded, channels_runs) -> None:
    with_data = [l for l in site.layers if l["dataset"]]
    if with_data:
        info = with_data[0]["dataset"]
        data = site.dataset
        if data is None or (data.name, data.split) != (info["name"], info["split"]):
            data, why = load_data(info["name"], info["split"])
            if why:
                site.notes.append(f"Not computed: {why}.")
        if data is not None and len(data) == info["count"]:
            site.dataset = data
            groups: dict[bool, list] = {}
            for layer in with_data:
                groups.setdefault(layer["neuron"], []).append(layer)
            for neuron, group in groups.items():
                names = [l["layer"] for l in group]
                examples = {l["layer"]: np.array([l["per"][c]["examples"] for c in sorted(l["per"])]) for l in group}
                channel_lists = {l["layer"]: sorted(l["per"]) for l in group}
                key = {"what": "layers", "model": loaded.sha256, "data": data.digest(), "layers": names,
                       "neuron": neuron, "examples": {n: e.tolist() for n, e in examples.items()}, "v": 2}
                try:
                    found = cached(cache_path("explore", key),
                                   lambda: compute_layers(loaded, data, names, examples, channel_lists, neuron),
                                   notes=site.notes)
                except Exception as exc:  # noqa: BLE001
                    site.notes.append(f"Not computed for {', '.join(names)}: {type(exc).__name__}: {exc}.")
                    continue
                for name in names:
                    site.extra[name] = {"channels": channel_lists[name], **found[name]}
        elif data is not None:
            site.notes.append("Not computed: the dataset differs in size from the one the run used.")
    heldout, why = load_data(loaded.spec.dataset, "test")
    if heldout is None:
        site.notes.append(f"No class pages' real images or confusions: {why}.")
        return
    site.heldout = heldout
    names = [l["layer"] for l in site.layers]
    key = {"what": "classes", "model": loaded.sha256, "data": heldout.digest(), "layers": names, "v": 1}
    try:
        site.class_extra = cached(cache_path("explore", key), lambda: compute_classes(loaded, heldout, names),
                                  notes=site.notes)
    except Exception as exc:  # noqa: BLE001
        site.notes.append(f"Class pages not computed: {type(exc).__name__}: {exc}.")


# --- writing the site ---------------------------------------------------------------------------


def _write_page(out: Path, name: str, title: str, data: dict) -> None:
    script = f"data/{name[:-5]}.js"
    (out / script).write_text("window.PAGE = " + json.dumps(data, separators=(",", ":"), default=float) + ";\n")
    (out / name).write_text(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width\"><link rel=\"icon\" href=\"data:,\">"
        f"<title>{html.escape(title)}</title><link rel=\"stylesheet\" href=\"explore.css\"></head>\n"
        "<body><main id=\"main\"><noscript>This page needs JavaScript.</noscript></main>\n"
        f"<script src=\"{script}\"></script><script src=\"explore.js\"></script></body></html>\n")


def _num(value) -> float | None:
    value = None if value is None else float(value)
    return None if value is None or not np.isfinite(value) else round(value, 4)


def _top(values: torch.Tensor, count: int = 8) -> list[tuple[int, float]]:
    order = torch.argsort(values, descending=True)[:count]
    return [(int(i), _num(values[i])) for i in order]


def build_site(runs: Sequence, out: str | Path, *, compute: bool = True, dataset=None, trust: bool = False) -> Path:
    """Write the site of ``runs`` (run folders or :class:`~introspect.folders.Run`s of one model) into ``out``."""
    site = _gather(runs, compute, dataset, trust)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("data", "img"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir()
    for asset in ("explore.js", "explore.css"):
        shutil.copyfile(ASSETS / asset, out / asset)
    class_pages = _class_pages(site)
    pages = {"classes": [{"class": c, "name": site.class_names[c], "href": f"class-{c}.html"} for c in class_pages]}
    layer_rows = [_write_layer(out, site, layer, class_pages) for layer in site.layers]
    image_rows = [_write_image(out, site, run, n, class_pages) for n, run in enumerate(site.images)]
    for c in class_pages:
        _write_class(out, site, c, class_pages)
    _write_page(out, "index.html", f"{site.label}: explorer",
                {"kind": "model", "title": site.label, "model": site.model, "layers": layer_rows,
                 "images": image_rows, "notes": site.notes, **pages})
    return out


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
                     "dead": dead, "rare": rare, "reached": reached, "best": _num(entry["activation"])})
    ratios = [r["ratio"] for r in rows if r["ratio"] is not None]
    counts = {"channels": len(rows), "dead": sum(r["dead"] for r in rows), "rare": sum(r["rare"] for r in rows),
              "not_reached": sum(not r["reached"] for r in rows),
              "median_ratio": _num(float(np.median(ratios))) if ratios else None}
    counts["live"] = counts["channels"] - counts["dead"] if layer["dataset"] else None
    if not layer["dataset"]:
        counts["dead"] = None
    return rows, counts


def _write_layer(out: Path, site: Site, layer: dict, class_pages: list[int]) -> dict:
    name = layer["layer"]
    extra = site.extra.get(name)
    rows, counts = _layer_stats(layer, extra)
    folder = out / "img" / slug(name)
    for row in rows:
        entry = layer["per"][row["c"]]
        for j, image in enumerate(entry["images"]):
            save_png(folder / f"{row['c']}{'' if j == 0 else f'-{j}'}.png", image)
        row["href"] = channel_page(name, row["c"])
        if name == site.logits_layer and row["c"] < len(site.class_names):
            row["name"] = site.class_names[row["c"]]
        row["thumb"] = f"img/{slug(name)}/{row['c']}.png"
    kind, shape = site.types.get(name, (None, None))
    summary = {"layer": name, "href": f"layer-{slug(name)}.html", "type": kind, "shape": list(shape) if shape else None,
               **counts, "first": rows[0]["thumb"] if rows else None}
    _write_page(out, summary["href"], f"{site.label}: {name}",
                {"kind": "layer", "title": f"{site.label}: layer {name}", "summary": summary, "channels": rows,
                 "rare_share": RARE_SHARE, "notes": site.notes})
    index = {n: i for i, n in enumerate(l["layer"] for l in site.layers)}
    previous = site.layers[index[name] - 1] if index[name] > 0 else None
    for i, row in enumerate(rows):
        _write_channel(out, site, layer, extra, row, rows[i - 1] if i else None, rows[i + 1] if i + 1 < len(rows) else None,
                       previous, class_pages, summary)
    return summary


def _write_channel(out: Path, site: Site, layer: dict, extra: dict | None, row: dict, before: dict | None,
                   after: dict | None, previous: dict | None, class_pages: list[int], summary: dict) -> None:
    name, c = layer["layer"], row["c"]
    entry = layer["per"][c]
    named = f" (class {row['name']})" if "name" in row else ""
    data = {"kind": "channel", "title": f"{site.label}: {name} channel {c}{named}", "layer": name, "channel": c,
            "layer_href": summary["href"], "row": row, "neuron": layer["neuron"],
            "optimized": [{"src": f"img/{slug(name)}/{c}{'' if j == 0 else f'-{j}'}.png", "activation": _num(s)}
                          for j, s in enumerate(entry["scores"])],
            "prev": before and before["href"], "next": after and after["href"], "notes": list(site.notes),
            "examples": [], "hist": None, "inputs": [], "outputs": []}
    data["rare_share"] = RARE_SHARE
    dataset = site.dataset
    if entry["examples"] and dataset is not None and not row["dead"]:
        maps = extra["maps"][extra["channels"].index(c)].float().numpy() if extra else None
        for j, (index, value) in enumerate(zip(entry["examples"], entry["example_values"])):
            src = f"img/{slug(name)}/{c}-ex{j}.png"
            picture = dataset.images[index].numpy()
            activation_map = maps[j] if maps is not None and maps.ndim == 3 else None
            save_png(out / src, overlay(picture, activation_map, mark=layer["neuron"] and activation_map is not None))
            data["examples"].append({"src": src, "index": index, "value": _num(value),
                                     "label": site.class_names[int(dataset.labels[index])]
                                     if int(dataset.labels[index]) < len(site.class_names) else None})
        if extra is None:
            data["notes"].append("Real examples shown without activation maps (not computed).")
    if extra is not None:
        k = extra["channels"].index(c)
        data["hist"] = histogram_page(extra["hist"][k], extra["low"][k], extra["high"][k])
        if "inputs" in extra and previous is not None:
            prev_name = previous["layer"]
            data["inputs"] = [{"layer": prev_name, "channel": i, "value": v,
                               "href": channel_page(prev_name, i) if i in previous["per"] else None,
                               "thumb": f"img/{slug(prev_name)}/{i}.png" if i in previous["per"] else None}
                              for i, v in _top(extra["inputs"][k])]
        if "outputs" in extra:
            data["outputs"] = [{"class": j, "name": site.class_names[j], "value": v,
                                "href": f"class-{j}.html" if j in class_pages else None}
                               for j, v in _top(extra["outputs"][k], 5)]
    _write_page(out, row["href"], data["title"], data)


def _write_class(out: Path, site: Site, c: int, class_pages: list[int]) -> None:
    data = {"kind": "class", "title": f"{site.label}: class {site.class_names[c]}", "class": c,
            "name": site.class_names[c], "notes": list(site.notes), "image": None, "top": [], "confusions": [],
            "channels": [], "prev": f"class-{class_pages[class_pages.index(c) - 1]}.html" if class_pages.index(c) else None,
            "next": f"class-{class_pages[class_pages.index(c) + 1]}.html" if c != class_pages[-1] else None}
    if site.classes and c in site.classes:
        save_png(out / f"img/class-{c}.png", site.classes[c]["image"])
        data["image"] = {"src": f"img/class-{c}.png", "probability": _num(site.classes[c]["probability"])}
    extra = site.class_extra
    if extra is not None:
        for j, (index, score) in enumerate(zip(extra["top"][c].tolist(), extra["top_scores"][c].tolist())):
            src = f"img/class-{c}-top{j}.png"
            save_png(out / src, site.heldout.images[index].numpy())
            label = int(site.heldout.labels[index])
            data["top"].append({"src": src, "index": index, "score": _num(score), "label": site.class_names[label]})
        row = extra["confusion"][c]
        total = int(row.sum())
        data["heldout"] = {"count": total, "correct": int(row[c]), "source": site.heldout.source}
        data["confusions"] = [{"class": j, "name": site.class_names[j], "count": int(row[j]),
                               "as_this": int(extra["confusion"][j, c]), "href": f"class-{j}.html"}
                              for j in torch.argsort(row + extra["confusion"][:, c], descending=True).tolist()
                              if j != c and (row[j] or extra["confusion"][j, c])][:5]
        pages = {l["layer"]: l for l in site.layers}
        for layer, values in extra["channels"].items():
            data["channels"] += [{"layer": layer, "channel": i, "value": v, "href": channel_page(layer, i),
                                  "thumb": f"img/{slug(layer)}/{i}.png"}
                                 for i, v in _top(values[c], 4) if i in pages[layer]["per"]]
    _write_page(out, f"class-{c}.html", data["title"], data)


def _write_image(out: Path, site: Site, run, n: int, class_pages: list[int]) -> dict:
    arrays, record = run.arrays, run.record
    base = f"img/image-{n}"
    save_png(out / f"{base}/input.png", (np.clip(arrays["input"], 0, 1) * 255).round().astype(np.uint8))
    saliency = arrays["saliency"]
    save_png(out / f"{base}/saliency.png", colored(saliency[0] if saliency.shape[0] == 1 else np.abs(saliency).max(0),
                                                 "RdBu_r", symmetric=saliency.shape[0] == 1))
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
        limit = float(shown.max()) or 1.0
        for ch in torch.argsort(strength, descending=True).tolist():
            item = {"channel": ch, "value": _num(strength[ch]),
                    "href": channel_page(layer, ch) if layer in pages and ch in pages[layer]["per"] else None}
            if shown.ndim == 3:
                item["src"] = f"{base}/{slug(layer)}-{ch}.png"
                save_png(out / item["src"], (np.clip(shown[ch].numpy() / limit, 0, 1) * 255).astype(np.uint8))
            if shown.ndim == 1 and layer == logits_layer and len(shown) == len(site.class_names):
                item["name"] = site.class_names[ch]
            channels.append(item)
        layers.append({"layer": layer, "shape": info["shape"], "activation": info["activation_shown"], "channels": channels,
                       "href": f"layer-{slug(layer)}.html" if layer in pages else None})
    prediction = record["prediction"]
    href = f"image-{n}.html"
    data = {"kind": "image", "title": f"{site.label}: {record['input']['source']}", "input": record["input"],
            "prediction": None if prediction is None else {
                **prediction, "href": f"class-{prediction['class']}.html" if prediction["class"] in class_pages else None},
            "top5": record["top5"], "input_src": f"{base}/input.png", "saliency_src": f"{base}/saliency.png",
            "layers": layers, "notes": list(site.notes)}
    _write_page(out, href, data["title"], data)
    return {"href": href, "source": record["input"]["source"], "thumb": f"{base}/input.png",
            "prediction": prediction["name"] if prediction else "no prediction (logits unknown)",
            "probability": _num(prediction["probability"]) if prediction else None}
