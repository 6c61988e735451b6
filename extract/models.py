"""Resolving a model spec to an nn.Module and reaching its layers by name.

Specs: ``torchvision:<arch>`` (random init, or ``--weights FILE``, a state dict loaded with
``weights_only=True``), and ``module:function`` returning an ``nn.Module``.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lce.errors import LceError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class LoadedModel:
    module: nn.Module
    name: str
    missing_keys: list[str]
    unexpected_keys: list[str]


def default_name(spec: str, weights: Path | None) -> str:
    """The model's name in the lake when --name is not given."""
    if weights is not None:
        return Path(weights).stem
    return spec.split(":", 1)[1] if ":" in spec else spec


def build_module(spec: str) -> nn.Module:
    prefix, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise LceError(f"model {spec!r}: expected torchvision:<arch> or module:function")
    if prefix == "torchvision":
        import torchvision

        try:
            return torchvision.models.get_model(rest, weights=None)
        except ValueError:
            names = torchvision.models.list_models()
            close = difflib.get_close_matches(rest, names, n=5)
            raise LceError(
                f"model {spec!r}: unknown torchvision architecture"
                + (f"; closest: {', '.join(close)}" if close else "")
            ) from None
    try:
        module = importlib.import_module(prefix)
    except ImportError as exc:
        raise LceError(f"model {spec!r}: cannot import module {prefix!r}: {exc}") from None
    factory = getattr(module, rest, None)
    if not callable(factory):
        raise LceError(f"model {spec!r}: {prefix} has no function {rest!r}")
    model = factory()
    if not isinstance(model, nn.Module):
        raise LceError(f"model {spec!r}: {rest}() returned {type(model).__name__}, not nn.Module")
    return model


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    if not Path(path).is_file():
        raise LceError(f"{path}: weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise LceError(
            f"{path}: cannot load as a weights-only checkpoint: {exc}".split("\n")[0]
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise LceError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


def _key_list(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > limit else shown


def load_model(
    spec: str, weights: Path | None, strict: bool = True, name: str | None = None
) -> LoadedModel:
    module = build_module(spec)
    missing: list[str] = []
    unexpected: list[str] = []
    if weights is not None:
        state = load_state_dict_file(weights)
        result = module.load_state_dict(state, strict=False)
        missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys: {_key_list(missing)}")
            if unexpected:
                parts.append(f"unexpected keys: {_key_list(unexpected)}")
            raise LceError(
                f"{weights}: checkpoint does not match {spec}: {'; '.join(parts)} (--non-strict to allow)"
            )
    module.eval()
    return LoadedModel(module, name or default_name(spec, weights), missing, unexpected)


def find_layers(model: nn.Module, names: list[str]) -> dict[str, nn.Module]:
    """The named modules, or an error listing the closest valid names (before any work)."""
    modules = dict(model.named_modules())
    found = {}
    for name in names:
        if name not in modules or name == "":
            close = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.4)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise LceError(f"layer {name!r} is not a module of the model{hint}")
        found[name] = modules[name]
    return found


def to_grid(output: torch.Tensor, layer: str, image_size: tuple[int, int]) -> torch.Tensor:
    """A layer output as (B, C, H, W); token outputs (B, T, C) drop class/register tokens.

    The grid is the h x w with the image's aspect ratio that leaves the fewest (0..8) leading
    extra tokens (class token, registers).
    """
    if isinstance(output, tuple | list):
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise LceError(f"layer {layer!r}: output is {type(output).__name__}, not a tensor")
    if output.dim() == 4:
        return output
    if output.dim() == 3:
        batch, tokens, channels = output.shape
        ih, iw = image_size
        for extra in range(0, 9):
            n = tokens - extra
            if n <= 0:
                break
            gh = max(1, round((n * ih / iw) ** 0.5))
            gw = n // gh
            if gh * gw == n and abs(gh / gw - ih / iw) <= 1 / min(gh, gw):
                return output[:, extra:, :].transpose(1, 2).reshape(batch, channels, gh, gw)
        raise LceError(f"layer {layer!r}: cannot arrange {tokens} tokens on a patch grid")
    raise LceError(
        f"layer {layer!r}: output has shape {tuple(output.shape)}, expected (B, C, H, W) or (B, tokens, C)"
    )


class LayerTaps:
    """Forward hooks that keep the latest output of each named layer."""

    def __init__(self, layers: dict[str, nn.Module]) -> None:
        self.outputs: dict[str, torch.Tensor] = {}
        self.handles = [m.register_forward_hook(self._hook(n)) for n, m in layers.items()]

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            self.outputs[name] = output

        return hook

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
