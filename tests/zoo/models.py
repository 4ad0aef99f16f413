"""Conformance zoo: small 1x28x28, 10-class models of assorted shapes, plus independent judges, a multi-label
sigmoid model (MultiLabelNet: three yes/no questions about a digit) and a fully-convolutional 2-class
detector (DetectorFCN: "a 7 or not", a (2, H, W) map of logits at any input size from 28x28 up), and one 1-D
signal model (ToneCNN: the pitch of a synthetic tone, 12 semitones, input (1, 1024)).

Every class is built without arguments and expects normalized input; the
trained weights are in tests/assets/zoo (manifest.json says each one's dataset,
normalization and where its logits are; train.py rebuilds them). Self-contained,
so the CLI can load it: --model tests/zoo/models.py:SeqCNN --checkpoint tests/assets/zoo/seqcnn.pt
"""
import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import VisionTransformer


class SeqCNN(nn.Module):
    """Two conv/pool stages and a two-layer classifier, all in nn.Sequential."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


class ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus the input (projected when the shape changes), then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.relu2 = nn.ReLU()

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + self.shortcut(x))


class BNResNet(nn.Module):
    """Stem conv, two residual blocks with BatchNorm, global average pool, Linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.block1 = ResidualBlock(16, 32, stride=2)
        self.block2 = ResidualBlock(32, 64, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(self.pool(self.block2(self.block1(self.stem(x)))).flatten(1))


class ActNet(nn.Module):
    """A CNN with one PReLU, one GELU and one SiLU module."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.prelu = nn.PReLU(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.gelu = nn.GELU()
        self.fc1 = nn.Linear(32 * 7 * 7, 64)
        self.silu = nn.SiLU()
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = F.max_pool2d(self.prelu(self.conv1(x)), 2)
        x = F.max_pool2d(self.gelu(self.conv2(x)), 2)
        return self.fc2(self.silu(self.fc1(x.flatten(1))))


class FunctionalNet(nn.Module):
    """A CNN whose activations are F.relu / F.gelu calls, with no activation modules."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 32, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.fc = nn.Linear(64 * 7 * 7, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.gelu(self.conv2(x))
        x = F.relu(self.conv3(x))
        return self.fc(x.flatten(1))


class MultiHead(nn.Module):
    """O-Net-like: returns (box regression (B,4), landmarks (B,10), softmax probabilities (B,10)).

    The class logits are the output of the Linear module ``classify``.
    """

    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.PReLU(16), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.PReLU(32), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.PReLU(64), nn.MaxPool2d(2),
        )
        self.dense = nn.Linear(64 * 2 * 2, 128)
        self.prelu = nn.PReLU(128)
        self.box = nn.Linear(128, 4)
        self.landmarks = nn.Linear(128, 10)
        self.classify = nn.Linear(128, 10)

    def forward(self, x):
        x = self.prelu(self.dense(self.trunk(x).flatten(1)))
        return self.box(x), self.landmarks(x), torch.softmax(self.classify(x), dim=1)


class DictNet(nn.Module):
    """Returns {"features": (B,64) embedding, "logits": (B,10)}."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(),
        )
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        features = self.body(x)
        return {"features": features, "logits": self.head(features)}


class MLP(nn.Module):
    """Flatten, then Linear/ReLU layers only."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10),
        )

    def forward(self, x):
        return self.layers(x)


class TinyViT(nn.Module):
    """torchvision's VisionTransformer on 7x7 patches, with a one-channel patch embedding."""

    def __init__(self):
        super().__init__()
        self.vit = VisionTransformer(image_size=28, patch_size=7, num_layers=4, num_heads=4, hidden_dim=64,
                                     mlp_dim=128, num_classes=10)
        proj = nn.Conv2d(1, 64, kernel_size=7, stride=7)
        nn.init.trunc_normal_(proj.weight, std=math.sqrt(1 / (7 * 7)))
        nn.init.zeros_(proj.bias)
        self.vit.conv_proj = proj

    def forward(self, x):
        return self.vit(x)


def _vgg_block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class JudgeVGG(nn.Module):
    """Judge: VGG-style conv-BN-ReLU blocks with max pooling, global pool, dropout, Linear."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            *_vgg_block(1, 16), nn.MaxPool2d(2),
            *_vgg_block(16, 32), *_vgg_block(32, 32), nn.MaxPool2d(2),
            *_vgg_block(32, 64), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 3 * 3, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


class JudgeMLP(nn.Module):
    """Judge: a wide MLP with dropout."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(), nn.Linear(784, 400), nn.ReLU(), nn.Dropout(0.3),
            nn.Linear(400, 200), nn.ReLU(), nn.Dropout(0.3), nn.Linear(200, 10),
        )

    def forward(self, x):
        return self.layers(x)


class MultiLabelNet(nn.Module):
    """Multi-label: three independent sigmoids ("even", "greater than 4", "has a loop": 0, 6, 8, 9) after a
    small CNN; the logits are the output of the Linear module ``head``, the forward returns their sigmoid."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.fc = nn.Linear(32 * 7 * 7, 64)
        self.head = nn.Linear(64, 3)

    def forward(self, x):
        return torch.sigmoid(self.head(F.relu(self.fc(self.features(x).flatten(1)))))


class DetectorFCN(nn.Module):
    """Fully convolutional "7 or not": trained on 28x28 digits, where its output is (B, 2, 1, 1); on a larger
    input it gives a (B, 2, H, W) map of logits, one verdict per 28x28 window (22x22 at 112x112)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 7), nn.ReLU(),
        )
        self.head = nn.Conv2d(64, 2, 1)

    def forward(self, x):
        return self.head(self.features(x))


class ToneCNN(nn.Module):
    """1-D: the pitch of a synthetic tone (12 semitones from A4 = 440 Hz up, 1024 samples at 8 kHz, input
    (1, 1024) as (C, L)): three Conv1d/ReLU stages, a global average over time, a Linear."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, 16, 9, stride=2, padding=4), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(16, 32, 9, padding=4), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(32, 32, 9, padding=4), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(32, 12)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))
