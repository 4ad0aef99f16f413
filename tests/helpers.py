"""Small helpers shared by the tests (library calls only: helpers that drive the command line live in
cli_helpers.py, so tests/system/test_layout.py can tell which modules drive it)."""
import textwrap

import numpy as np
import torch
from torch import nn

#: Model files the tests load as a user would (the small_net_file and heads fixtures of conftest.py write them).
SMALL_NET = textwrap.dedent("""
    import torch
    from torch import nn

    class SmallNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.block1 = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
            self.block2 = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(inplace=True))
            self.head = nn.Linear(6, 3)

        def forward(self, x):
            x = self.block2(self.block1(x))
            return self.head(x.mean((2, 3)))

    class SoftNet(SmallNet):
        def forward(self, x):
            return torch.softmax(super().forward(x), 1)
""")

HEADS = textwrap.dedent("""
    import torch
    from torch import nn

    class Heads(nn.Module):
        '''Like MTCNN's O-Net: (box, landmarks, softmax probabilities); the logits live in `classify`.'''
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.PReLU(8), nn.AdaptiveAvgPool2d(2), nn.Flatten())
            self.box, self.marks, self.classify = nn.Linear(32, 4), nn.Linear(32, 10), nn.Linear(32, 3)
        def forward(self, x):
            h = self.body(x)
            return self.box(h), self.marks(h), torch.softmax(self.classify(h), 1)

    class Named(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
        def forward(self, x):
            return {"features": x.mean((2, 3)), "logits": self.net(x)}

    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            from torchvision.models import VisionTransformer
            self.vit = VisionTransformer(image_size=16, patch_size=8, num_layers=1, num_heads=2, hidden_dim=8,
                                         mlp_dim=16, num_classes=3)
        def forward(self, x):
            return self.vit(x)
""")


class Recurrent(nn.Module):
    """A 1-D signal (1, 16) through a Conv1d, an LSTM (its output a tuple: no channels of its own) and a Linear."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv1d(1, 4, 3, padding=1)
        self.lstm = nn.LSTM(4, 6, batch_first=True)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        out, _ = self.lstm(torch.relu(self.conv(x)).transpose(1, 2))
        return self.fc(out[:, -1])


def recurrent():
    """(Recurrent(), its spec)."""
    from introspect.models import ModelSpec

    return Recurrent().eval(), ModelSpec("recurrent", "user", (1, 16), (0.5,), (0.5,), "fc", ("a", "b", "c"))


def hook_count(model: nn.Module) -> int:
    """Forward, forward-pre and backward hooks left on any module of ``model``."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def zoo_model(name: str):
    """A model of the conformance zoo (tests/zoo/models.py + tests/assets/zoo), loaded as a user would:
    its file, its checkpoint and the metadata flags of its manifest entry."""
    import json
    from pathlib import Path

    from introspect import MetaOverrides, load_model

    here = Path(__file__).resolve().parent
    entry = json.loads((here / "assets" / "zoo" / "manifest.json").read_text())[name]
    logits = entry["logits"]
    meta = MetaOverrides(input_shape=tuple(entry["input_shape"]), mean=tuple(entry["mean"]), std=tuple(entry["std"]),
                         logits_layer=logits.get("layer"),
                         logits_output=None if logits.get("output") is None else str(logits["output"]))
    return load_model(f"{here / 'zoo' / 'models.py'}:{entry['class']}", here / "assets" / "zoo" / f"{name}.pt", meta=meta)


def tiny_dataset(n=40, seed=0):
    """``n`` seeded random 28x28 grey images, labels 0-9 in turn: a dataset for channel runs."""
    from introspect.data import ImageDataset

    g = torch.Generator().manual_seed(seed)
    images = (torch.rand(n, 1, 28, 28, generator=g) * 255).to(torch.uint8)
    return ImageDataset("tiny", "train", images, torch.arange(n) % 10, tuple("0123456789"), "random test images")


def digit(label: int) -> np.ndarray:
    """The first held-out MNIST digit with this label, (28, 28) uint8, light on dark."""
    from introspect.data import load_dataset

    data = load_dataset("mnist", "test")
    return data.images[data.labels == label][0, 0].numpy()


def chromium(*arguments: str, capabilities: dict | None = None):
    """Debian's headless Chromium driven by selenium through Debian's chromedriver (never a download); a
    missing browser fails the test with the command that installs it."""
    import os
    from pathlib import Path

    import pytest

    chrome, chromedriver = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
    missing = [str(p) for p in (chrome, chromedriver) if not p.is_file()]
    if missing:
        pytest.fail(f"no browser: {', '.join(missing)} missing (apt-get install -y chromium chromium-driver)")
    os.environ["SE_AVOID_STATS"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(chrome)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", *arguments):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    for name, value in (capabilities or {}).items():
        options.set_capability(name, value)
    return webdriver.Chrome(options=options, service=Service(str(chromedriver)))




class HostTraffic:
    """Counts, while entered, the calls that move values between the host and the device on a GPU: reads of a
    tensor's values (bool(), .item(), .tolist(), float(), int(), format(), .numpy(), .nonzero(), torch.equal) and
    copies (.to(...) of a device or tensor, .cpu(), .cuda()). Each waits for the device there; on the CPU the same
    calls run, so a CPU test sees where the CUDA path would wait (``introspect.devices.host_reads_free`` patched
    False takes the CUDA branches). The methods are wrapped on the class, so calls in backward passes count too."""

    READS = ("__bool__", "item", "tolist", "__float__", "__int__", "__index__", "__format__", "numpy", "nonzero")
    COPIES = ("cpu", "cuda")

    def __init__(self) -> None:
        self.count = 0
        self._inside = False
        self._saved: list[tuple[object, str, object]] = []

    def _wrap(self, owner, name: str, counts) -> None:
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            if self._inside or not counts(args, kwargs):
                return original(*args, **kwargs)
            self.count += 1
            self._inside = True  # one read, however it is made (format() reads with .item())
            try:
                return original(*args, **kwargs)
            finally:
                self._inside = False

        self._saved.append((owner, name, original))
        setattr(owner, name, wrapper)

    def __enter__(self) -> "HostTraffic":
        always = lambda args, kwargs: True  # noqa: E731
        for name in self.READS + self.COPIES:
            self._wrap(torch.Tensor, name, always)
        self._wrap(torch.Tensor, "to", lambda args, kwargs: any(
            isinstance(t, (torch.Tensor, torch.device, str)) for t in [*args[1:], *kwargs.values()]))
        self._wrap(torch, "equal", always)
        return self

    def __exit__(self, *exc) -> None:
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)
        self._saved.clear()
