"""Bring your own model: a small CNN in a file of your own, addressed as examples/my_model.py:SmallNet.

    introspect layers   --model examples/my_model.py:SmallNet --size 28
    introspect channels --model examples/my_model.py:SmallNet --layer block2.0 --size 28 --mean 0.5 --std 0.5
    (add --checkpoint small.pt once you have trained weights; without it the weights are random)
"""
import torch
from torch import nn


class SmallNet(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.head = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block2(self.block1(x)).mean((2, 3)))
