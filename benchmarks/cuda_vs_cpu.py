"""How far CUDA's activations are from the CPU's for one model and layer (not a test).

The engine's tables on CUDA equal a brute force over the same CUDA activations bit for bit
(tests/test_extract_cuda.py); this says how much the activations themselves move between the
two devices: ResNet-50 (seeded random init, as ``torchvision:resnet50`` without --weights)
on seeded random images, layer4, with PyTorch's default CUDA settings (cuDNN may use TF32
for convolutions) and with TF32 off.

    python3 benchmarks/cuda_vs_cpu.py [--arch resnet50] [--layer layer4] [--images 16]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def layer_output(model: torch.nn.Module, layer: str, images: torch.Tensor) -> torch.Tensor:
    kept: dict[str, torch.Tensor] = {}
    module = dict(model.named_modules())[layer]
    handle = module.register_forward_hook(lambda _m, _i, out: kept.__setitem__("a", out))
    with torch.no_grad():
        model(images)
    handle.remove()
    return kept["a"].float().cpu()


def main() -> None:
    from extract.models import build_module

    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--layer", default="layer4")
    parser.add_argument("--images", type=int, default=16)
    args = parser.parse_args()
    model = build_module(f"torchvision:{args.arch}").eval()
    images = torch.randn((args.images, 3, 224, 224), generator=torch.Generator().manual_seed(0))
    cpu = layer_output(model, args.layer, images)
    model = model.cuda()
    scale = cpu.abs().amax().item()
    for label, tf32 in (("default (cuDNN TF32 allowed)", True), ("TF32 off", False)):
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        gpu = layer_output(model, args.layer, images.cuda())
        diff = (gpu - cpu).abs()
        print(
            f"{args.arch} {args.layer}, {args.images} images, {label}: max |cuda - cpu| = "
            f"{diff.max().item():.3g} ({diff.max().item() / scale:.2g} of the largest value), "
            f"{(gpu == cpu).float().mean().item():.1%} of values bit-equal"
        )


if __name__ == "__main__":
    main()
