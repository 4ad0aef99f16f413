import pytest
import torch

from introspect.data import DATASETS
from introspect.models import ModelSpec, Net, load_model

from helpers import HEADS, SMALL_NET


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every test runs in its own folder with its own cache: nothing lands in the checkout or ~/.cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INTROSPECT_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def tiny_spec() -> ModelSpec:
    info = DATASETS["mnist"]
    return ModelSpec(name="tiny", architecture="mnist-net", input_shape=(1, 28, 28), mean=info.mean, std=info.std,
                     logits_layer="fc2", class_names=info.class_names, dataset="mnist",
                     activations={"conv1": "relu", "conv2": "relu", "fc1": "relu"})


@pytest.fixture
def tiny_model() -> Net:
    """A seeded, untrained Net (built without touching the global RNG)."""
    model = Net()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
    return model


@pytest.fixture(scope="session")
def shipped_mnist():
    return load_model("mnist")


@pytest.fixture(params=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def device(request) -> str:
    """Every device this machine has: the CUDA paths run wherever a GPU exists."""
    return request.param


@pytest.fixture
def small_net_file(tmp_path):
    """tests/helpers.py's SMALL_NET (SmallNet, and SoftNet, whose output is softmax) as a user's model file."""
    path = tmp_path / "my_models.py"
    path.write_text(SMALL_NET)
    return path


@pytest.fixture
def heads(tmp_path):
    """tests/helpers.py's HEADS (models whose output is not one logits tensor) as a user's model file."""
    (tmp_path / "heads.py").write_text(HEADS)
    return tmp_path / "heads.py"
