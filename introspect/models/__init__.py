"""Models: the spec beside the weights, the checkpoint format, the built-in models, and load_model,
the one way in for any source (built-in, torchvision, a user's file, TorchScript)."""
from .checkpoint import file_sha256, load_checkpoint, load_state, load_weights, read_checkpoint, save_checkpoint
from .mnist_net import LeNet, Net
from .registry import ARCHITECTURES, BUILTIN_MODELS, Architecture, LoadedModel, builtin_checkpoint_path
from .sources import MetaOverrides, load_model
from .spec import ModelSpec

__all__ = [
    "ARCHITECTURES", "Architecture", "BUILTIN_MODELS", "LeNet", "LoadedModel", "MetaOverrides", "ModelSpec", "Net",
    "builtin_checkpoint_path", "file_sha256", "load_checkpoint", "load_model", "load_state", "load_weights",
    "read_checkpoint", "save_checkpoint",
]
