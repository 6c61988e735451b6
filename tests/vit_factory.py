"""Small Vision Transformers for the token-grid tests (module:function specs name these)."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import VisionTransformer


def tiny_vit() -> nn.Module:
    """torchvision's ViT at toy size: 24 x 24 images, 4 x 4 patches (a 6 x 6 grid + class token)."""
    torch.manual_seed(0)
    model = VisionTransformer(
        image_size=24, patch_size=4, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32
    )
    with torch.no_grad():  # torchvision starts the class token at zero; make it count
        model.class_token.normal_()
    return model


class RegisterViT(nn.Module):
    """A ViT with a class token and 4 register tokens before the patches (as DINOv2-reg)."""

    def __init__(self, image_size: int = 24, patch: int = 4, dim: int = 16) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.registers = nn.Parameter(torch.randn(1, 4, dim))
        n = (image_size // patch) ** 2
        self.pos = nn.Parameter(torch.randn(1, n, dim) * 0.1)
        self.blocks = nn.Sequential(
            nn.TransformerEncoderLayer(dim, 2, 32, dropout=0.0, batch_first=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos
        b = tokens.shape[0]
        extra = torch.cat([self.cls_token, self.registers], dim=1).expand(b, -1, -1)
        return self.blocks(torch.cat([extra, tokens], dim=1))[:, 0]


def register_vit() -> nn.Module:
    torch.manual_seed(0)
    return RegisterViT()
