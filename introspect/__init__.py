"""introspect: what did my network actually learn?

Activation maximization and layer introspection for PyTorch models::

    import introspect
    loaded = introspect.load_model("mnist")
    result = introspect.visualize_classes(loaded.model, loaded.spec)
    introspect.figure(result)          # shown inline in Jupyter
    introspect.save_run(result, loaded=loaded)   # a run folder `introspect rerun` can repeat

Importing introspect does not import matplotlib: figures load it when first drawn.
"""
from .version import __version__

from .activations import ActivationsResult, inspect_image, load_image
from .channels import (CHANNELS_DEFAULTS, ChannelsPlan, ChannelsResult, dataset_examples, plan_channels,
                       visualize_channels)
from .classes import CLASSES_DEFAULTS, ClassesResult, class_scores, resolve_classes, visualize_classes
from .data import load_dataset
from .engine import RenderConfig, RenderParts, RenderResult, adam, render
from .errors import UserError
from .hooks import HookRegistry, Probe, record
from .layers import describe_layers, select_layers
from .models import MetaOverrides, ModelSpec, load_checkpoint, load_model, save_checkpoint
from .folders import load_run
from .objectives import Objective, channel, class_logit, class_logits, diversity
from .params import ImageConfig, image_for, prior_for
from .records import save_run
from .transforms import Normalize, RandomAffine, TransformConfig


def figure(result, **options):
    """The report figure of a classes, channels, activations or render result (a matplotlib Figure)."""
    from .report import figure as draw

    return draw(result, **options)


__all__ = [
    "ActivationsResult", "CHANNELS_DEFAULTS", "CLASSES_DEFAULTS", "ChannelsPlan", "ChannelsResult", "ClassesResult",
    "HookRegistry", "ImageConfig", "MetaOverrides", "ModelSpec", "Normalize", "Objective", "Probe", "RandomAffine",
    "RenderConfig", "RenderParts", "RenderResult", "TransformConfig", "UserError", "adam", "channel", "class_logit", "class_logits",
    "class_scores", "dataset_examples", "describe_layers", "diversity", "figure", "image_for", "inspect_image", "load_checkpoint",
    "load_dataset", "load_image", "load_model", "load_run", "plan_channels", "prior_for", "record", "render", "resolve_classes",
    "save_checkpoint", "save_run", "select_layers", "visualize_channels", "visualize_classes",
]
