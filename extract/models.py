"""Resolving a model spec to an nn.Module and reaching its layers by name.

Specs: a registry name (``mocov2``: the published checkpoint, downloaded and converted, see
``extract.registry``), ``torchvision:<arch>`` and ``timm:<name>`` (random init, or ``--weights
FILE``, a state dict loaded with ``weights_only=True``), and ``module:function`` returning an
``nn.Module``. Transformer layers whose output is (B, tokens, C) are put back on their patch grid.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from base.errors import LceError
from extract.config import DEFAULT_INIT_SEED, IMAGENET_MEAN, IMAGENET_STD, NORMALIZATIONS


@dataclass
class LoadedModel:
    module: nn.Module
    name: str
    missing_keys: list[str]
    unexpected_keys: list[str]


def default_name(spec: str, weights: Path | None) -> str:
    """The model's name in the lake when --name is not given: a registry model's own name, else
    the weights file's stem, else the architecture or function name."""
    from extract import registry

    entry = registry.lookup(spec)
    if entry is not None:
        return entry.name
    if weights is not None:
        return Path(weights).stem
    return spec.split(":", 1)[1] if ":" in spec else spec


def resolve_normalize(spec: str, normalize: str) -> str:
    """``auto`` -> the normalisation the model was trained with, where lce knows it (SimCLR's
    TensorFlow models take raw [0, 1] pixels), else ImageNet's; other values stay."""
    if normalize != "auto":
        return normalize
    from extract import registry

    entry = registry.lookup(spec)
    if entry is not None:
        return entry.normalize
    prefix, _, rest = spec.partition(":")
    if prefix == "timm":
        return _timm_normalize(rest)
    return "imagenet"


def _timm_normalize(name: str) -> str:
    try:
        import timm
    except ImportError:
        return "imagenet"
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except Exception:
        cfg = None
    mean = tuple(getattr(cfg, "mean", IMAGENET_MEAN) or IMAGENET_MEAN) if cfg else IMAGENET_MEAN
    std = tuple(getattr(cfg, "std", IMAGENET_STD) or IMAGENET_STD) if cfg else IMAGENET_STD
    for key, (m, s) in NORMALIZATIONS.items():
        if all(abs(a - b) < 1e-3 for a, b in zip((*m, *s), (*mean, *std), strict=True)):
            return key
    return "imagenet"


def build_module(spec: str, seed: int = DEFAULT_INIT_SEED) -> nn.Module:
    """The architecture a spec names, randomly initialised under ``seed`` (a registry name:
    under its own seed), so ``torchvision:<arch>`` without --weights is the same random network
    every run. The global RNG is left as it was."""
    from extract import registry

    entry = registry.lookup(spec)
    if entry is not None:
        return registry.build(entry)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build_unseeded(spec)


def _build_unseeded(spec: str) -> nn.Module:
    prefix, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise LceError(
            f"model {spec!r}: expected a registry name (see `lce models`), torchvision:<arch>, "
            "timm:<name> or module:function" + _close_registry_names(spec)
        )
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
    if prefix == "timm":
        return _build_timm(spec, rest)
    return module_from_factory(prefix, rest, f"model {spec!r}")


def module_from_factory(module_name: str, function: str, what: str) -> nn.Module:
    """``module:function`` -> the nn.Module the function returns; ``what`` names the option in
    the one-line errors (shared by `lce extract` models and `lce probe segment` segmenters)."""
    cwd = str(Path.cwd())
    if cwd not in sys.path and "" not in sys.path:
        # as `python -m` does: a module in the folder lce runs from is importable without
        # PYTHONPATH (appended, so it never shadows an installed package)
        sys.path.append(cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise LceError(f"{what}: cannot import module {module_name!r}: {exc}") from None
    factory = getattr(module, function, None)
    if not callable(factory):
        raise LceError(f"{what}: {module_name} has no function {function!r}")
    model = factory()
    if not isinstance(model, nn.Module):
        raise LceError(f"{what}: {function}() returned {type(model).__name__}, not nn.Module")
    return model


def _close_registry_names(spec: str) -> str:
    from extract import registry

    names = [e.name for e in registry.REGISTRY]
    close = difflib.get_close_matches(registry.canonical(spec), names, n=3, cutoff=0.5)
    return f"; closest registry names: {', '.join(close)}" if close else ""


def _build_timm(spec: str, name: str) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise LceError(f"model {spec!r}: timm is not installed (pip install 'lce[timm]')") from None
    try:
        module = timm.create_model(name, pretrained=False)
    except RuntimeError:
        close = difflib.get_close_matches(name, timm.list_models(), n=5)
        raise LceError(
            f"model {spec!r}: unknown timm model"
            + (f"; closest: {', '.join(close)}" if close else "")
        ) from None
    return module


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a file: PyTorch (weights only) or .safetensors, unwrapping training
    checkpoints' ``state_dict`` / ``model`` / ``network`` entries."""
    from extract.formats import as_state_dict, read_torch_file, unwrap_state_dict

    state = unwrap_state_dict(read_torch_file(Path(path)))
    if not isinstance(state, dict):
        raise LceError(f"{path}: expected a state dict, got {type(state).__name__}")
    return as_state_dict(state, str(path))


def _key_list(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > limit else shown


def _strip_data_parallel(
    state: dict[str, torch.Tensor], module: nn.Module
) -> dict[str, torch.Tensor]:
    """Drop the ``module.`` prefix DataParallel adds when every key has it and the model's don't."""
    prefixed = bool(state) and all(k.startswith("module.") for k in state)
    if prefixed and not any(k.startswith("module.") for k in module.state_dict()):
        return {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_model(
    spec: str,
    weights: Path | None,
    strict: bool = True,
    name: str | None = None,
    seed: int = DEFAULT_INIT_SEED,
) -> LoadedModel:
    """Build the model a spec names and load its weights: a registry model's published
    checkpoint (downloaded, converted) or ``--weights``; strict unless told otherwise."""
    from extract import registry

    entry = registry.lookup(spec)
    module = build_module(spec, seed)
    state: dict[str, torch.Tensor] | None
    if entry is not None:
        state = registry.checkpoint_state(entry, weights)
        label = str(weights) if weights is not None else f"{entry.name} checkpoint"
    else:
        state = load_state_dict_file(weights) if weights is not None else None
        state = _strip_data_parallel(state, module) if state is not None else None
        label = str(weights)
    missing: list[str] = []
    unexpected: list[str] = []
    if state is not None:
        try:
            result = module.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shapes that differ are an error even when not strict
            lines = [x.strip() for x in str(exc).splitlines() if "size mismatch" in x]
            raise LceError(
                f"{label}: checkpoint does not match {spec}: "
                + ("; ".join(lines[:3]) or str(exc).splitlines()[0])
            ) from None
        missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys: {_key_list(missing)}")
            if unexpected:
                parts.append(f"unexpected keys: {_key_list(unexpected)}")
            raise LceError(
                f"{label}: checkpoint does not match {spec}: {'; '.join(parts)} (turn strict off to allow them)"
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


def infer_patch_size(model: nn.Module) -> tuple[int, int] | None:
    """The patch size of a Vision Transformer, so token outputs can be put on their exact grid.

    torchvision's ViT has ``patch_size``; timm's has ``patch_embed.patch_size``; otherwise the
    first convolution on the RGB input whose stride equals its kernel (a patch embedding).
    None for models without one (CNNs)."""
    size = getattr(model, "patch_size", None)
    if size is None:
        size = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    if isinstance(size, int):
        return (size, size)
    if isinstance(size, tuple | list) and len(size) == 2 and all(isinstance(v, int) for v in size):
        return (int(size[0]), int(size[1]))
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3:
            kernel, stride = tuple(module.kernel_size), tuple(module.stride)
            if kernel == stride and kernel[0] > 1 and module.padding in ((0, 0), 0, "valid"):
                return (int(kernel[0]), int(kernel[1]))
            return None  # the first convolution on the image is no patch embedding
    return None


# At most this many leading tokens are not patches (class token, registers, distillation token).
MAX_EXTRA_TOKENS = 16


def to_grid(
    output: torch.Tensor | tuple | list,
    layer: str,
    image_size: tuple[int, int],
    patch: tuple[int, int] | None = None,
) -> torch.Tensor:
    """A layer output as (B, C, H, W); token outputs (B, T, C) drop class/register tokens.

    With the model's patch size the grid is (ih // ph, iw // pw) and the leading T - h*w tokens
    are dropped. Without one (or when the count does not fit, e.g. after token merging), the grid
    is the h x w with the image's aspect ratio that leaves the fewest leading extra tokens.
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
        if patch is not None:
            gh, gw = ih // patch[0], iw // patch[1]
            extra = tokens - gh * gw
            if gh > 0 and gw > 0 and 0 <= extra <= MAX_EXTRA_TOKENS:
                return output[:, extra:, :].transpose(1, 2).reshape(batch, channels, gh, gw)
        for extra in range(0, MAX_EXTRA_TOKENS + 1):
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


class StopForward(Exception):
    """Raised by the last tap's hook to end a forward pass whose remaining modules no table
    needs; `LayerTaps.run` catches it."""


def _versions(output: object) -> tuple[int, ...]:
    """The in-place version counters of a layer output's tensors; -1 for one that keeps none
    (an inference-mode tensor), so that it never reads as unchanged."""
    tensors = output if isinstance(output, tuple | list) else (output,)
    out = []
    for t in tensors:
        if isinstance(t, torch.Tensor):
            try:
                out.append(t._version)
            except RuntimeError:
                out.append(-1)
    return tuple(out) if out else (-1,)


class LayerTaps:
    """Forward hooks that keep the latest output of each named layer (and the model's patch
    size, so token outputs can be put on their grid).

    The pass stops once every tapped layer has run: the first forward runs the whole model,
    counts how often each tapped module is called, and notes each kept output's in-place
    version counter when the last tap fires. Only if each tapped module runs exactly once (so
    its first output is its latest) and no kept output is changed in place after the last tap
    do later forwards stop there. Otherwise the whole pass keeps running, so every table stays
    what the whole pass gives, and `whole_pass_reason` says why: a shared ReLU called twice,
    or torchvision's ``relu(inplace=True)`` after a tapped ``bn1`` (the whole pass keeps the
    rectified values, as it always has)."""

    def __init__(self, layers: dict[str, nn.Module], patch: tuple[int, int] | None = None) -> None:
        self.outputs: dict[str, torch.Tensor] = {}
        self.patch = patch
        self.calls: dict[str, int] = {}
        self.can_stop: bool | None = None  # unknown until the first whole pass
        self.versions: dict[str, tuple[int, ...]] = {}  # of the kept outputs, at the last tap
        self.whole_pass_reason: str | None = None
        self.handles = [m.register_forward_hook(self._hook(n)) for n, m in layers.items()]
        self.names = list(layers)

    def grid(self, name: str, image_size: tuple[int, int]) -> torch.Tensor:
        return to_grid(self.outputs[name], name, image_size, self.patch)

    def run(self, model: nn.Module, images: torch.Tensor) -> None:
        """One forward pass of ``model`` on ``images`` (the caller picks the grad mode), stopped
        after the last tap once a whole pass has shown that is safe; a pass that ran to its end
        teaches the taps whether the next may stop. The outputs are in ``outputs``."""
        self.start()
        try:
            model(images)
        except StopForward:
            return  # every tapped layer has run; nothing after it is needed
        self.finish()

    def start(self) -> None:
        """Called before each forward pass."""
        self.calls = {}

    def finish(self) -> None:
        """Called after a forward pass that ran to its end: learn whether later passes may stop."""
        if self.can_stop is not None:
            return
        twice = [n for n in self.names if self.calls.get(n, 0) != 1]
        changed = [
            n
            for n in self.names
            if n not in twice
            and (self.versions.get(n) != _versions(self.outputs.get(n)) or -1 in self.versions[n])
        ]
        self.can_stop = not twice and not changed
        if twice:
            self.whole_pass_reason = (
                f"layer(s) {', '.join(twice)} run more than once a forward pass; "
                "the whole network runs"
            )
        elif changed:
            self.whole_pass_reason = (
                f"the output of layer(s) {', '.join(changed)} is changed in place later in "
                "the forward pass; the whole network runs"
            )

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            self.outputs[name] = output
            self.calls[name] = self.calls.get(name, 0) + 1
            if len(self.calls) < len(self.names):
                return
            if self.can_stop:
                raise StopForward
            if self.can_stop is None and not self.versions:  # the first pass's last tap
                self.versions = {n: _versions(self.outputs[n]) for n in self.names}

        return hook

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()

    def __enter__(self) -> LayerTaps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
