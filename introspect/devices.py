"""What crosses between the host and the device: on a GPU each read of a tensor's values on the host, and each
copy from the host, waits for the device to finish its queue, so code that runs every step does neither (the
tests count both on the CPU: tests/helpers.py ``HostTraffic``)."""
from __future__ import annotations

import torch


def host_reads_free(device: torch.device) -> bool:
    """Whether reading a tensor's values back on the host costs nothing on ``device`` (the CPU). Elsewhere code
    that runs every step reads only at intervals (the CUDA path; the tests take it on the CPU by patching this)."""
    return device.type == "cpu"


class Constant:
    """A tensor read every step, copied to the device (and dtype) of the values it meets once, not every step."""

    def __init__(self, value: torch.Tensor) -> None:
        self.value = value
        self._copy = value

    def on(self, device: torch.device) -> torch.Tensor:
        """The value on ``device``, in its own dtype."""
        if self._copy.device != device or self._copy.dtype != self.value.dtype:
            self._copy = self.value.to(device)
        return self._copy

    def like(self, other: torch.Tensor) -> torch.Tensor:
        """The value on ``other``'s device, in its dtype."""
        if self._copy.device != other.device or self._copy.dtype != other.dtype:
            self._copy = self.value.to(other.device, other.dtype)
        return self._copy
