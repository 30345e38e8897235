"""LoRA dropout on the CPU from 16 random bits an element: four elements from each 64-bit draw.

torch's CPU dropout draws a Bernoulli sample per element through a serial sampler (it takes MKL's
vectorised one on Intel CPUs only): on a 2-core AMD EPYC, peft's LoRA dropout (p 0.05 on the input
of each adapted projection) took 16% of a tiny-default training step, more than the projections.
`BitMaskDropout` drops an element where its 16 bits fall below round(p * 65536) and scales the kept
ones by 1 / (1 - that fraction): the drop probability is p to 1/65536 (0.05 becomes 0.050003). Its
bits come from torch's default generator, so seeds, checkpoints and resume govern it as they do
torch's own dropout. On other devices (CUDA's fused dropout is fast) it is torch's dropout.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

BITS = 16
LEVELS = 1 << BITS
LOWEST = -(1 << (BITS - 1))  # the smallest int16: bits are drawn as signed 16-bit integers
LANES = 64 // BITS  # elements decided by one 64-bit draw


class BitMaskDropout(nn.Module):
    """Dropout with probability `p` (to 1/65536), its mask from four elements a 64-bit random draw on the CPU."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.dropped_levels = round(p * LEVELS)
        self.scale = LEVELS / (LEVELS - self.dropped_levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.dropped_levels == 0:
            return x
        if x.device.type != "cpu":
            return functional.dropout(x, self.p, training=True)
        return x * self.keep_mask(x)

    def keep_mask(self, x: torch.Tensor) -> torch.Tensor:
        """0 where an element of `x` drops, `scale` where it stays, in `x`'s shape and dtype."""
        count = x.numel()
        words = torch.empty(-(-count // LANES), dtype=torch.int64).random_(-(1 << 63), None)  # all 64 bits
        lanes = words.view(torch.int16)[:count].view(x.shape)
        return (lanes >= LOWEST + self.dropped_levels).to(x.dtype).mul_(self.scale)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_bitmask_dropout(model: nn.Module) -> int:
    """Replace each peft LoRA dropout of `model` (an nn.Dropout with p > 0) by a BitMaskDropout; how many."""
    replaced = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, nn.ModuleDict):
            continue
        for adapter, dropout in dropouts.items():
            if isinstance(dropout, nn.Dropout) and dropout.p > 0:
                dropouts[adapter] = BitMaskDropout(dropout.p)
                replaced += 1
    return replaced
