"""Classes: the input each class of a classifier likes most, all classes in one batch."""
from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import torch
from torch import nn

from .data import ImageDataset
from .engine import ProgressCallback, RenderConfig, RenderResult, on_device
from .errors import UserError
from .hooks import record
from .layers import DRY_BATCH
from .models.spec import ModelSpec
from .objectives import blog_loss, class_confidence, class_logits
from .outputs import as_logits, class_values, describe_kind, kind_warning, probabilities, probability_label
from .params import CHOICE, STARTS, ImageConfig, from_model, image_for, image_generators, prior_for, start_bias
from .transforms import RandomAffine, TransformConfig, is_signal

OBJECTIVES = {"confidence": class_confidence, "logit": class_logits, "blog": blog_loss}
#: Defaults of class visualizations, chosen with benchmarks/quality.py (MNIST, Fashion-MNIST and the zoo):
#: the data basis where the spec has one (else FFT), the data's ink level, TV, redirected ReLU gradient.
CLASSES_DEFAULTS = RenderConfig(steps=144, lr=0.1, tv=15.0, ink=50.0, redirect_relu=True, image=ImageConfig(parametrization="basis"))
#: The random transforms of class images without data (a prior derived from the model, ``params.model_prior``)
#: when the config keeps the default ones: zoom by up to ±50% and rotate by up to ±20 degrees, so a class must
#: read at every scale, not from a texture at one (chosen with benchmarks/no_data.py on the zoo).
NO_DATA_TRANSFORMS = TransformConfig(scale=0.5, rotate=20.0)
#: ... plus Gaussian noise of this standard deviation (pixel values) for a model whose input is first read by a fully
#: connected layer over all of it (``reads_input_densely``: an MLP on pixels, without the spatial weight sharing that
#: keeps a conv net's images in strokes), while optimized and when candidates are kept: under noise only a class drawn
#: in broad strokes survives, not a pattern of single pixels.
#: benchmarks/no_data.py --only mlp --seeds 0,...,9 --noise S:
#: the zoo's Fashion-MNIST MLP's best judge names 74 of 100 classes without noise (7 on seven seeds), 80, 81, 80 and 78
#: with 0.3, 0.45, 0.6 and 0.8 (0.45: 8-9 on every seed). On models that read pixels through convolutions it hurts
#: (--noise 0.3 --noise-everywhere: the BNResNet 9/10/10 -> 6/6/7 at seeds 0-2, the TinyViT 8/8/8 -> 7/5/7).
DENSE_NOISE = 0.45
#: Without data each class gets up to this many candidates, kept by the model's own verdict under its random
#: transforms (``robust_margins``): a model of another architecture names the kept ones more often (seeds 0-2,
#: benchmarks/no_data.py: the zoo's BNResNet 8/9/7 -> 9/10/10 of 10, TinyViT 8/8/7 -> 8/8/8, the MLP 7/7/7 -> 7/8/7) ...
NO_DATA_CANDIDATES = 8
#: ... as long as the batch stays within this many input values (8 x 10 classes of 28 x 28 = 62,720): a model
#: with more classes or larger inputs gets fewer (one for ImageNet's 1000 classes), so the cost stays small.
NO_DATA_VALUES = 65_536
#: The random transforms a candidate's margin is averaged over when it is kept without data.
CHOICE_DRAWS = 32
#: Candidate j of class c is rendered with key c + j * CANDIDATE_STRIDE: candidate 0 is the image a run
#: without candidates makes, and every (class, candidate) draws its own randomness.
CANDIDATE_STRIDE = 2 ** 20
MAX_CANDIDATES = 4096  # keys stay below 2**32 (params.seed_entropy keeps 32 bits of a key)
NAME_CHARS = 16  # class names longer than this are shortened in tile titles


def format_probability(p: float, label: str = "p") -> str:
    """"p=0.734"; "p=1.000" and "p=0.000" only when the value is exactly 1 or 0, else "p>0.999" / "p<0.001"
    where three decimals would round to them. ``label`` names the probability ("p (sigmoid)")."""
    if math.isnan(p):
        return f"{label}=nan"
    if p == 1.0 or p == 0.0:
        return f"{label}={p:.3f}"
    if p >= 0.9995:
        return f"{label}>0.999"
    if p < 0.0005:
        return f"{label}<0.001"
    return f"{label}={p:.3f}"


def _short(name: str, chars: int = NAME_CHARS) -> str:
    return name if len(name) <= chars else name[:chars - 1] + "…"


@dataclass
class ClassesResult:
    """One optimized image per class with the model's verdict on it.

    With ``candidates`` > 1 each class was rendered that many times (in the same batch, each from its
    own seed key) and the candidate with the largest margin was kept; ``images``, ``render`` (values,
    history, snapshots, stopped) and every per-class field describe the kept candidates only.
    """

    images: torch.Tensor  # (N, C, H, W) in [0, 1]
    labels: list[int]
    class_names: list[str]
    logits: torch.Tensor  # (N,) the target class's logit on the final image
    probabilities: torch.Tensor  # (N,) probability of the target class (softmax, or sigmoid: see output_kind)
    runner_up: list[int | None]  # the highest other class on the final image (None for a one-class model)
    runner_up_logits: torch.Tensor  # (N,) its logit
    runner_up_probabilities: torch.Tensor  # (N,) its softmax probability
    margins: torch.Tensor  # (N,) target logit - runner-up logit (NaN for a one-class model)
    render: RenderResult
    config: RenderConfig
    objective: str
    model_name: str = ""
    candidates: int = 1
    robust: bool = False  # candidates kept by their mean margin over CHOICE_DRAWS random transforms (no data)
    chosen: list[int] = field(default_factory=list)  # which candidate (0-based) was kept, per class
    candidate_margins: torch.Tensor | None = None  # (candidates, N) every candidate's margin
    candidate_named: torch.Tensor | None = None  # (candidates, N) whether the model names each one untransformed
    runner_up_names: list[str] = field(default_factory=list)
    start: str = ""  # the starting image, in words ("dark (auto)", "grey", ...)
    pulled: bool = False  # the pull toward the data's mean input applied (the spec had a prior)
    inked: bool = False  # the ink-level term applied (the spec had a prior)
    parametrization: str = ""  # the parametrization used ("basis" falls back to "fft" without a data basis)
    output_kind: str | None = None  # what the values at the logits are (introspect.outputs; None: logits)
    logits_position: str | None = None  # how a spatial map of logits was reduced (None: not a map)
    spec: ModelSpec | None = None  # the spec the images were rendered with, its image prior applied (prior_for)

    @property
    def titles(self) -> list[str]:
        """Tile titles: class, "logit 23.4  p=1.000", "next: 1 (p=0.000)" (the runner-up). Sigmoid heads say
        "p (sigmoid)"; outputs that are probabilities (their logits out of reach) show "p (softmax)" or
        "p (sigmoid)" alone, no logit."""
        label = probability_label(self.output_kind).replace(" ", "\u00a0")  # "p (sigmoid)" is never split
        has_logits = self.output_kind in (None, "logits", "sigmoid logits")
        titles = []
        for i, (name, logit, p) in enumerate(zip(self.class_names, self.logits.tolist(), self.probabilities.tolist())):
            verdict = format_probability(p, label)
            shown = f"{logit:.1f}"
            shown = "0.0" if shown == "-0.0" else shown  # a logit that rounds to 0 is written unsigned
            title = f"{_short(name)}\n" + (f"logit {shown}  {verdict}" if has_logits else verdict)
            if self.runner_up[i] is not None:
                title += (f"\nnext: {_short(self.runner_up_names[i])} "
                          f"({format_probability(float(self.runner_up_probabilities[i]), label)})")
            titles.append(title)
        return titles

    @property
    def kept_by(self) -> str:
        """How the kept candidate of each class was chosen, in words (``transforms.is_signal``: only shifted)."""
        if self.robust:
            noise = f" with noise {self.config.transforms.noise:g}" if self.config.transforms.noise else ""
            moves = "shifts along the signal" if is_signal(self.images) else "zooms and rotations"
            return (f"largest mean logit margin over {CHOICE_DRAWS} random {moves}{noise}, among those "
                    "the model names as they are")
        return "largest logit margin"

    @property
    def settings(self) -> str:
        """The run's settings in one plain-text line (for the report)."""
        c = self.config
        parts = [f"objective {self.objective}", f"steps {c.steps}", f"lr {c.lr:g}", f"seed {c.seed}",
                 f"param {self.parametrization or c.image.parametrization}", f"start {self.start or 'auto'}"]
        applied = (("tv", c.tv), ("pull", c.pull if self.pulled else 0), ("ink", c.ink if self.inked else 0),
                   ("l2", c.l2), ("blur", c.blur))
        parts += [f"{name} {weight:g}" for name, weight in applied if weight]
        if c.transforms.noise:
            parts.append(f"input noise {c.transforms.noise:g}")
        parts.append(f"candidates {self.candidates}" + (f" (kept: {self.kept_by})" if self.candidates > 1 else ""))
        if self.output_kind not in (None, "logits") or self.logits_position is not None:
            parts.append(f"output {describe_kind(self.output_kind, self.logits_position)}")
        warning = kind_warning(self.output_kind)
        return "settings: " + ", ".join(parts) + ("\n" + warning if warning else "")


#: Class names an unknown name's error lists in full; with more (ImageNet's 1,000) it names the closest.
LISTED_NAMES = 20


def resolve_classes(spec: ModelSpec, classes: Sequence[int | str] | None) -> list[int]:
    """Class indices from indices, ranges of indices ("0-9", as channel lists take) or names (case-insensitive);
    all classes when None."""
    if classes is None:
        return list(range(spec.num_classes))
    lookup = {name.lower(): i for i, name in enumerate(spec.class_names)}
    indices = []
    for item in classes:
        text = str(item).strip()
        if not text:
            raise UserError("empty item in the class list; write e.g. 0,3,7, 0-9 or sneaker,bag")
        if text.lower() in lookup:
            indices.append(lookup[text.lower()])
            continue
        ends = re.fullmatch(r"(\d+)\s*-\s*(\d+)", text)
        try:
            span = range(int(ends[1]), int(ends[2]) + 1) if ends else range(int(text), int(text) + 1)
        except ValueError:
            raise UserError("unknown class '{text}'; {names}", text=text, names=_names_hint(spec, text)) from None
        if not span:
            raise UserError("malformed class range '{text}': the start is after the end", text=text)
        for index in (span[0], span[-1]):
            if not 0 <= index < spec.num_classes:
                raise UserError("class index {index} is out of range: this model has classes 0-{last}",
                                index=index, last=spec.num_classes - 1)
        indices.extend(span)
    if not indices:
        raise UserError("no classes given")
    return list(dict.fromkeys(indices))


def _names_hint(spec: ModelSpec, text: str) -> str:
    """The class names for an unknown one's error: all of a few, else the closest of many and how to see them."""
    if len(spec.class_names) <= LISTED_NAMES:
        return "classes are: " + ", ".join(spec.class_names)
    close = difflib.get_close_matches(text, spec.class_names, n=3, cutoff=0.5)
    return (f"closest: {', '.join(close)}; " if close else "") + \
        f"this model has {len(spec.class_names)} classes: give an index 0-{len(spec.class_names) - 1} or a name"


def logits_of(spec: ModelSpec) -> str:
    """Where the spec's logits are (see ``ModelSpec.logits``); a UserError when it does not say."""
    if spec.logits is None:
        raise UserError("{name}'s logits are unknown (its output is not one (batch, classes) tensor): name the layer "
                        "that computes them with {logits_layer}, or the part of the output with {logits_output}",
                        settings=("logits_layer", "logits_output"), name=spec.name)
    return spec.logits


def class_scores(model: nn.Module, spec: ModelSpec, images: torch.Tensor, device: str = "cpu") -> torch.Tensor:
    """Logits (N, classes) of the spec's logits for pixel-space images (N, C, H, W) in [0, 1]: a spatial map
    reduced as ``spec.logits_position`` says, probabilities turned back into logits (``outputs.as_logits``)."""
    where = logits_of(spec)
    output = record(model, spec, images, [where], device)[where]
    return as_logits(class_values(output, spec.logits_position).float(), spec.output_kind).cpu()


def logits_moved(model: nn.Module, result: "ClassesResult") -> torch.Tensor:
    """(N,) how far each kept image's class logit moved from that of its starting image (the same seed, key and
    spec as rendered, rebuilt): near 0 where the logit does not answer the input (units closed at the start, a
    constant head). The objective's history cannot tell: its regularizer terms move while the logit stays."""
    config, spec = result.config, result.spec
    keys = [label + chosen * CANDIDATE_STRIDE for label, chosen in zip(result.labels, result.chosen)]
    with torch.no_grad():
        start = image_for(spec, config.image, keys, config.seed)()
    with on_device(model, config.device) as model:
        logits = class_scores(model, spec, start, config.device)
    return (result.logits - verdicts(logits, result.labels, spec.output_kind).logits).abs()


def class_objective(spec: ModelSpec, objective: str, classes: Sequence[int]):
    """The class objective ``objective`` for the spec's logits, their kind and map reduction."""
    extra = {}
    if spec.output_kind not in (None, "logits") or spec.logits_position is not None:
        extra = {"kind": spec.output_kind, "position": spec.logits_position}
    return OBJECTIVES[objective](logits_of(spec), classes, **extra)


def describe_start(config: RenderConfig, spec: ModelSpec, parametrization: str) -> str:
    """The starting image of a ``parametrization`` in words: "data mean logit (auto)" (data basis), "data mean
    (auto)", "dark", "grey", "grey (auto)", or the sigmoid bias."""
    bias = start_bias(config.image, spec)
    if isinstance(bias, torch.Tensor):
        if from_model(spec):
            return "normalization mean (auto)"
        return "data mean logit (auto)" if parametrization == "basis" else "data mean (auto)"
    name = next((n for n, b in STARTS.items() if b == bias and n != "auto"), f"bias {bias:g}")
    return name + (" (auto)" if config.image.init_bias is None else "")


class Verdicts(NamedTuple):
    """The model's verdict on rows of images, each with its target class."""

    logits: torch.Tensor  # (B,) the target's logit
    probabilities: torch.Tensor  # (B,) the target's probability (softmax, or sigmoid for sigmoid kinds)
    runner_up: torch.Tensor  # (B,) the highest other class (-1 for a one-class model)
    runner_up_logits: torch.Tensor  # (B,) its logit (NaN for a one-class model)
    runner_up_probabilities: torch.Tensor  # (B,) its probability (0 for a one-class model)
    margins: torch.Tensor  # (B,) target logit - runner-up logit (NaN for a one-class model)


def verdicts(logits: torch.Tensor, labels: Sequence[int], kind: str | None = None) -> Verdicts:
    """The verdicts of logits (B, classes) on rows whose targets are ``labels``; ``kind`` (``introspect.outputs``)
    says how probabilities follow from them (a sigmoid per unit for sigmoid heads, else softmax)."""
    picked = torch.as_tensor(list(labels), dtype=torch.long).view(-1, 1)
    probabilities = _probabilities(logits, kind)
    target, target_p = logits.gather(1, picked).squeeze(1), probabilities.gather(1, picked).squeeze(1)
    if logits.shape[1] < 2:
        nan = torch.full_like(target, float("nan"))
        return Verdicts(target, target_p, torch.full_like(picked.squeeze(1), -1), nan, torch.zeros_like(target), nan)
    runner_logit, runner = logits.scatter(1, picked, float("-inf")).max(1)
    return Verdicts(target, target_p, runner, runner_logit, probabilities.gather(1, runner.view(-1, 1)).squeeze(1),
                    target - runner_logit)


def _probabilities(logits: torch.Tensor, kind: str | None) -> torch.Tensor:
    return torch.softmax(logits, 1) if kind in (None, "logits") else probabilities(logits, kind)


def without_data(spec: ModelSpec, config: RenderConfig) -> bool:
    """Whether ``config`` renders class images of ``spec`` (after ``prior_for``) without data: a prior derived from
    the model itself (``from_model``), used, and the default transforms or the no-data ones (NO_DATA_TRANSFORMS at
    any noise: the config a no-data run records, so that a run repeated from it is one without data again). The one
    test of ``default_candidates`` and ``visualize_classes``."""
    if not (config.image.use_prior and from_model(spec)):
        return False
    return config.transforms == TransformConfig() or replace(config.transforms, noise=0.0) == NO_DATA_TRANSFORMS


def default_candidates(spec: ModelSpec, config: RenderConfig, count: int) -> int:
    """Candidates per class when the caller names none, for ``count`` classes of ``spec`` (after ``prior_for``):
    without data (``without_data``) NO_DATA_CANDIDATES, fewer where the batch would pass NO_DATA_VALUES input
    values; else 1."""
    if not without_data(spec, config):
        return 1
    return max(1, min(NO_DATA_CANDIDATES, NO_DATA_VALUES // (count * math.prod(spec.image_shape))))


def reads_input_densely(model: nn.Module, spec: ModelSpec, device: str = "cpu") -> bool:
    """Whether the first module with weights of its own that the input reaches (one forward of a grey input) is an
    nn.Linear over all of the input's values: a model without spatial weight sharing (an MLP on pixels)."""
    first: list[nn.Module] = []
    weighted = [m for m in model.modules() if next(m.parameters(recurse=False), None) is not None]
    handles = [m.register_forward_pre_hook(lambda module, _: first.append(module) if not first else None)
               for m in weighted]
    try:
        class_scores(model, spec, torch.full((DRY_BATCH, *spec.image_shape), 0.5), device)
    finally:
        for handle in handles:
            handle.remove()
    return bool(first) and isinstance(first[0], nn.Linear) and first[0].in_features == math.prod(spec.image_shape)


def no_data_transforms(model: nn.Module, spec: ModelSpec, device: str = "cpu") -> TransformConfig:
    """The transforms class images without data get in place of the default ones: NO_DATA_TRANSFORMS, with
    DENSE_NOISE for a model that ``reads_input_densely`` (``model`` on ``device``)."""
    return replace(NO_DATA_TRANSFORMS, noise=DENSE_NOISE if reads_input_densely(model, spec, device) else 0.0)


def robust_margins(model: nn.Module, spec: ModelSpec, images: torch.Tensor, labels: Sequence[int],
                   config: RenderConfig, keys: Sequence[int]) -> torch.Tensor:
    """Each image's margin (target logit - best other logit), averaged over CHOICE_DRAWS random draws of
    ``config.transforms`` (each image's own, from (seed, key) on a stream of their own): the model's own
    verdict on whether the class survives the transforms it was optimized under."""
    affine = RandomAffine(config.transforms, image_generators(config.seed, keys, CHOICE))
    total = torch.zeros(len(images))
    for _ in range(CHOICE_DRAWS):
        logits = class_scores(model, spec, affine(images), config.device)
        total += verdicts(logits, labels, spec.output_kind).margins
    return total / CHOICE_DRAWS


def kept_candidates(score: torch.Tensor, named: torch.Tensor | None = None) -> torch.Tensor:
    """Per class (a column of ``score`` (candidates, N)), the candidate with the highest score; with ``named``
    (candidates, N) only among those the model names (all, where it names none of a class's). Ties and NaN
    scores: the first candidate."""
    if named is not None:
        score = torch.where(named | ~named.any(0), score, torch.full_like(score, float("-inf")))
    return torch.nan_to_num(score, nan=float("-inf")).argmax(0)


def visualize_classes(model: nn.Module, spec: ModelSpec, classes: Sequence[int | str] | None = None,
                      config: RenderConfig = CLASSES_DEFAULTS, objective: str = "confidence",
                      callback: ProgressCallback | None = None, candidates: int | None = None,
                      data: ImageDataset | torch.Tensor | None = None) -> ClassesResult:
    """The input each class likes most: all classes optimized together in one batch.

    ``objective`` is "confidence" (default: the class's logit plus 10 x its log-probability, from
    where ``spec.logits`` says), "logit" (the logit alone) or "blog" (the original -10*logsoftmax[target] + sum(logsoftmax) loss, for comparison).
    ``candidates`` > 1 renders that many images per class in the same batch (candidate j of class c
    from seed key c + j * 2**20) and keeps, per class, the one whose final, untransformed image has the
    largest margin of the target logit over the best other logit (the model's own logits; no other
    model takes part in the choice; ties go to the lower candidate); without data, the largest margin
    averaged over CHOICE_DRAWS random transforms (``robust_margins``) among the candidates the model names
    untransformed (all, where it names none). None: ``default_candidates``
    (NO_DATA_CANDIDATES without data, else 1). ``candidates=1`` is exactly a
    run without candidates. Candidate 0 starts from the same random draws as that run, but the larger
    batch can change the model's floating-point kernels (CPU conv/matmul blocking), so it ends close
    to that image, not always byte-identical with it. The result's render (values, history,
    snapshots, stopped) covers the kept candidates only; ``candidate_margins`` holds every margin.
    ``data`` (an ImageDataset or real images) gives the images its image prior (``params.prior_for``), as
    the command line does with its dataset. Without data or a stored prior, the prior comes from the model's
    normalization (``params.model_prior``: start at its mean, its ink level) with NO_DATA_TRANSFORMS in place of
    the default transforms (a config that has the no-data ones already, as a no-data run's ``config`` does, keeps
    them: ``without_data``), unless ``config.image.use_prior`` is off. The caller's model stays where it is (a copy
    runs on ``config.device`` if needed).
    """
    if objective not in OBJECTIVES:
        raise UserError("unknown objective '{objective}'; choose {choices}",
                        objective=objective, choices=" or ".join(OBJECTIVES))
    if candidates is not None:
        try:
            whole = None if isinstance(candidates, bool) else operator.index(candidates)
        except TypeError:
            whole = None
        if whole is None or not 1 <= whole <= MAX_CANDIDATES:
            raise UserError("candidates must be a whole number from 1 to {most}, got {candidates!r}",
                            most=MAX_CANDIDATES, candidates=candidates)
        candidates = whole
    spec, _ = prior_for(spec, data, derive=config.image.use_prior)
    labels = resolve_classes(spec, classes)
    if candidates is None:
        candidates = default_candidates(spec, config, len(labels))
    no_data = without_data(spec, config)
    robust = no_data and candidates > 1
    if candidates > 1 and spec.num_classes > CANDIDATE_STRIDE:
        raise UserError("candidates need fewer than {stride} classes (seed keys would repeat)", stride=CANDIDATE_STRIDE)
    count = len(labels)
    rows_labels = labels * candidates  # row j * count + i: candidate j of class labels[i]
    keys = [c + j * CANDIDATE_STRIDE for j in range(candidates) for c in labels]
    with on_device(model, config.device) as model:
        if no_data and config.transforms == TransformConfig():  # a recorded no-data config is kept as it is
            config = config.replace(transforms=no_data_transforms(model, spec, config.device))
        result = config.render(model, class_objective(spec, objective, rows_labels), spec, keys, callback)
        logits = class_scores(model, spec, result.images, config.device)
        verdict = verdicts(logits, rows_labels, spec.output_kind)
        margins = verdict.margins
        if robust and logits.shape[1] >= 2:
            margins = robust_margins(model, spec, result.images, rows_labels, config, keys)
    by_candidate = margins.view(candidates, count)
    score = verdict.logits.view(candidates, count) if logits.shape[1] < 2 else by_candidate
    named = verdict.margins.view(candidates, count) > 0 if logits.shape[1] >= 2 else None
    chosen = kept_candidates(score, named if robust else None)
    rows = chosen * count + torch.arange(count)
    kept = rows.tolist()
    if candidates > 1:
        position = {row: i for i, row in enumerate(kept)}
        result_all, result = result, replace(
            result, images=result.images[rows], values=result.values[rows], history=result.history[:, rows],
            snapshots={step: frame[rows] for step, frame in result.snapshots.items()},
            stopped=[position[r] for r in result.stopped if r in position], notes=list(result.notes),
            failed_at={position[r]: step for r, step in result.failed_at.items() if r in position},
        )
        dropped = [r for r in result_all.stopped if r not in position]
        if dropped:
            result.notes.append(f"{len(dropped)} candidate(s) not kept had a NaN/inf objective "
                                "(their optimization stopped there)")
    runner_up = [None if r < 0 else int(r) for r in verdict.runner_up[rows].tolist()]
    return ClassesResult(
        images=result.images, labels=labels, class_names=[spec.class_names[i] for i in labels],
        logits=verdict.logits[rows], probabilities=verdict.probabilities[rows], runner_up=runner_up,
        runner_up_logits=verdict.runner_up_logits[rows], runner_up_probabilities=verdict.runner_up_probabilities[rows],
        margins=verdict.margins[rows],
        render=result, config=config, objective=objective, model_name=spec.name,
        candidates=candidates, robust=robust, chosen=chosen.tolist(), candidate_margins=by_candidate,
        candidate_named=named,
        runner_up_names=["" if r is None else spec.class_names[r] if r < len(spec.class_names) else str(r)
                         for r in runner_up],
        start=describe_start(config, spec, result.param),
        pulled=any(name.startswith("toward(") for name in result.regularizers),
        inked=any(name.startswith("ink(") for name in result.regularizers),
        parametrization=result.param, output_kind=spec.output_kind, logits_position=spec.logits_position,
        spec=spec,
    )
