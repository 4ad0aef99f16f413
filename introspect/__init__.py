"""introspect: what did my network actually learn?

Activation maximization and layer introspection for PyTorch models::

    import introspect
    loaded = introspect.load_model("mnist")
    result = introspect.visualize_classes(loaded.model, loaded.spec)
    introspect.figure(result)          # shown inline in Jupyter
"""
__version__ = "0.1.0"

from .api import ClassesResult, class_scores, resolve_classes, visualize_classes
from .engine import RenderConfig, RenderResult, render
from .models import ModelSpec, load_checkpoint, load_model, save_checkpoint
from .objectives import Objective, channel, class_logit, class_logits
from .report import figure
from .transforms import TransformConfig

__all__ = [
    "ClassesResult", "ModelSpec", "Objective", "RenderConfig", "RenderResult", "TransformConfig",
    "channel", "class_logit", "class_logits", "class_scores", "figure", "load_checkpoint", "load_model",
    "render", "resolve_classes", "save_checkpoint", "visualize_classes",
]
