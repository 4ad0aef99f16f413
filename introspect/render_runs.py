"""A RenderResult as a run folder: images.npz, report.<format> and run.json, what ``save_run`` writes for it."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .engine import RenderResult
from .models.registry import LoadedModel
from .runs import Provenance, _finite, base_record, claim_run_folder, run_status, to_uint8


def save_render(result: RenderResult, folder: str | Path | None = None, *, loaded: LoadedModel | None = None,
                formats: Sequence[str] = ("png",), force: bool = False, provenance: Provenance | None = None) -> Path:
    """Write ``result`` into ``folder`` (default: a new ``runs/render-NNN``): its images (uint8) and objective
    values, a tiled report, and run.json naming the parts that made it. ``loaded`` or ``provenance`` name the
    model; without either the run records none (render needs no spec). Returns the folder."""
    from . import report

    if provenance is None:
        provenance = Provenance.of(loaded) if loaded is not None else Provenance(model={"name": None}, label="")
    run = claim_run_folder(folder, "render", force)
    try:
        arrays = {"images": to_uint8(result.images), "values": result.values.numpy()}
        steps = sorted(result.snapshots)
        if steps:
            arrays["snapshots"] = np.stack([to_uint8(result.snapshots[s]) for s in steps])
            arrays["snapshot_steps"] = np.asarray(steps)
        with run.file("images.npz") as path:
            np.savez_compressed(path, **arrays)
        fig = report.render_figure(result, title=provenance.label)
        for fmt in formats:
            with run.file(f"report.{fmt}") as path:
                report.save_figure(fig, path)
        record = base_record(provenance, None, 0.0, run_status(result.interrupted_at), result.steps_done)
        record.update({
            "command_name": "render",
            "objective": result.objective,
            "param": result.param,
            "transforms": list(result.transforms),
            "regularizers": list(result.regularizers),
            "values": [_finite(v) for v in result.values.tolist()],
            "stopped_non_finite": list(result.stopped),
            "notes": list(result.notes),
            "history": result.history.tolist(),  # (steps, images): the objective during optimization
        })
        run.finish(record)
    except BaseException:
        run.abandon()
        raise
    return run.path
