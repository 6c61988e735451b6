"""Tiny segmenters for `lce probe segment` tests (module:function specs).

Real segmentation weights cannot be downloaded in the test environment, so the module:function
path is tested with a segmenter whose output the test can compute by hand: per 2x2 block of the
normalised input, class k's score is the mean of channel k (0 red, 1 green, 2 blue). CALLS
counts forward passes (the resume test checks that finished images are not segmented again).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

CALLS = {"images": 0}


class ChannelSegmenter(nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        CALLS["images"] += x.shape[0]
        return {"out": F.avg_pool2d(x, 2)}


def channels() -> nn.Module:
    return ChannelSegmenter()


def not_a_module() -> str:
    return "nope"
