"""Checkpoint formats of the published ResNet-50s, read safely and converted to torchvision names.

Each format is a *reader* (file -> the object it holds, never executing code from the file) and a
*conversion*, a plain function from that object to a torchvision ``resnet50`` state dict. The
conversions keep the backbone only: projection/prediction heads, prototypes, momentum encoders,
queues and (for self-supervised models) the ``fc`` layer are dropped, because the registry's models
are dissected up to ``layer4`` and a head of another shape cannot load into torchvision's ``fc``.

Readers:

- PyTorch files: ``torch.load(..., weights_only=True)`` (``.safetensors`` when the package is there).
- TensorFlow checkpoints (SimCLR): the TensorBundle format (an SSTable ``.index`` of protobuf
  entries plus ``.data-*`` shards) parsed in plain Python in ``extract.formats_tf``, so
  TensorFlow is not needed; their conversion (``convert_simclr_tf``) is here with the others.
- BYOL's JAX/Haiku pickle: a restricted unpickler that rebuilds numpy arrays and turns every other
  class the file names into an inert stand-in, so nothing in the file runs and neither JAX nor
  Haiku is needed.
"""

from __future__ import annotations

import importlib
import pickle
import re
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from base.errors import LceError

StateDict = dict[str, torch.Tensor]

# --------------------------------------------------------------------------------- readers


def read_torch_file(path: Path) -> Any:
    """A PyTorch checkpoint (or ``.safetensors`` file), loaded without running code from it."""
    path = Path(path)
    if not path.is_file():
        raise LceError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise LceError(
                f"{path}: reading .safetensors needs the safetensors package (pip install safetensors)"
            ) from None
        try:
            return load_file(str(path))
        except Exception as exc:
            raise LceError(f"{path}: cannot read as safetensors: {exc}".split("\n")[0]) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise LceError(
            f"{path}: cannot load as a weights-only checkpoint: {exc}".split("\n")[0]
        ) from None


def unwrap_state_dict(obj: Any, keys: tuple[str, ...] = ("state_dict", "model", "network")) -> Any:
    """The state dict inside a training checkpoint: ``{'state_dict': ...}``, ``{'model': ...}``
    or ``{'network': ...}`` (possibly nested), else the object itself."""
    for _ in range(4):
        if not isinstance(obj, Mapping):
            return obj
        inner = next((obj[k] for k in keys if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            return obj
        obj = inner
    return obj


def as_state_dict(obj: Any, source: str) -> StateDict:
    if not isinstance(obj, Mapping) or not obj:
        raise LceError(f"{source}: expected a state dict, got {type(obj).__name__}")
    out: StateDict = {}
    for key, value in obj.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.array(value))
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise LceError(f"{source}: entry {key!r} is {type(value).__name__}, not a tensor")
        out[key] = value
    return out


# ------------------------------------------------------------------ BYOL's Haiku pickle


class Opaque:
    """An inert stand-in for a class a pickle names but lce does not import (JAX, Haiku, BYOL's
    own NamedTuple): it only records what the pickle would have passed to it."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Opaque:
        obj = super().__new__(cls)
        obj.args, obj.kwargs, obj.state, obj.items = args, kwargs, None, []
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items.append((key, value))

    def append(self, value: Any) -> None:
        self.items.append(value)

    def extend(self, values: Any) -> None:
        self.items.extend(values)

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    state: Any
    items: list[Any]


def _numpy_reconstruct_only(f: Any, args: Any, state: Any, npdict: Any = None) -> Any:
    """dill's array constructor, allowed only to call numpy's own ``_reconstruct``."""
    if f is not _NP_RECONSTRUCT:
        return Opaque(f, args, state)
    array = f(*args)
    array.__setstate__(state)
    return array


try:  # numpy >= 2 (numpy.core still answers, with a warning)
    _multiarray = importlib.import_module("numpy._core.multiarray")
except ImportError:  # numpy 1.x
    _multiarray = importlib.import_module("numpy.core.multiarray")
_NP_RECONSTRUCT = _multiarray._reconstruct
_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _NP_RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _NP_RECONSTRUCT,
    ("numpy.core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): _multiarray.scalar,
    ("dill._dill", "_create_array"): _numpy_reconstruct_only,
    ("collections", "OrderedDict"): dict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        known = _SAFE_GLOBALS.get((module, name))
        if known is not None:
            return known
        if module.startswith("numpy") and name.endswith("DType"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dtypes = importlib.import_module("numpy.dtypes")
            if hasattr(dtypes, name):
                return getattr(dtypes, name)
        return type(name, (Opaque,), {"__module__": f"lce-stand-in:{module}"})


def read_pickle_safely(path: Path) -> Any:
    """A pickle whose numpy arrays are rebuilt and whose other objects are inert stand-ins."""
    path = Path(path)
    if not path.is_file():
        raise LceError(f"{path}: weights file not found")
    try:
        with path.open("rb") as fh:
            return _SafeUnpickler(fh).load()
    except Exception as exc:
        raise LceError(f"{path}: cannot read as a pickle: {exc}".split("\n")[0]) from None


def _children(node: Any) -> Iterator[Any]:
    if isinstance(node, Mapping):
        yield from node.values()
    elif isinstance(node, list | tuple):
        yield from node
    elif isinstance(node, Opaque):
        yield from node.args
        yield from node.kwargs.values()
        if node.state is not None:
            yield node.state
        for item in node.items:
            yield item[1] if isinstance(item, tuple) and len(item) == 2 else item


def _walk(node: Any, depth: int = 0) -> Iterator[Any]:
    """Every object in the tree, depth first, in the pickle's own order."""
    yield node
    if depth < 12:
        for child in _children(node):
            yield from _walk(child, depth + 1)


def _as_mapping(node: Any, depth: int = 0) -> Mapping[str, Any] | None:
    """A mapping, or the first mapping a stand-in wraps (Haiku's frozendict/FlatMapping)."""
    if isinstance(node, Mapping):
        return node
    if isinstance(node, Opaque) and depth < 3:
        for child in _children(node):
            found = _as_mapping(child, depth + 1)
            if found is not None:
                return found
    return None


def _as_array(node: Any) -> np.ndarray | None:
    if isinstance(node, np.ndarray):
        return node
    if isinstance(node, np.generic):
        return np.asarray(node)
    if isinstance(node, Opaque):
        return next((a for a in map(_as_array, _children(node)) if a is not None), None)
    return None


def find_haiku_trees(tree: Any) -> tuple[dict[str, dict[str, np.ndarray]], ...]:
    """The first Haiku params tree (module -> {name: array}) holding a ResNet's ``initial_conv``
    and the first state tree holding batch-norm ``mean_ema`` averages.

    BYOL pickles ``_ByolExperimentState(online_params, target_params, online_state, target_state,
    opt_state)``; in pickle order the first of each kind is the online network's."""
    params: dict[str, dict[str, np.ndarray]] | None = None
    state: dict[str, dict[str, np.ndarray]] | None = None
    for node in _walk(tree):
        if not isinstance(node, Mapping) or not node:
            continue
        keys = [k for k in node if isinstance(k, str)]
        if params is None and any(k.endswith("initial_conv") for k in keys):
            candidate = _haiku_modules(node)
            if any("w" in v for k, v in candidate.items() if k.endswith("initial_conv")):
                params = candidate
        if state is None and any(k.endswith("/~/mean_ema") for k in keys):
            state = _haiku_modules(node)
        if params is not None and state is not None:
            return params, state
    raise LceError(
        "no Haiku ResNet parameters (…/initial_conv) and batch-norm state (…/mean_ema) found"
    )


def _haiku_modules(node: Mapping[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    for module, value in node.items():
        inner = _as_mapping(value)
        if not isinstance(module, str) or inner is None:
            continue
        arrays = {str(k): a for k, v in inner.items() if (a := _as_array(v)) is not None}
        if arrays:
            out[module] = arrays
    return out


# ------------------------------------------------------------------------ conversions

SSL_HEADS = ("fc", "head", "heads", "projection", "projection_head", "prototypes", "predictor",
             "linear", "classifier", "jigsaw", "head_jig")  # fmt: skip


def select_prefix(state: StateDict, prefixes: tuple[str, ...]) -> StateDict:
    """Keep the keys under the first prefix that any key has, without it (``module.encoder_q.``
    keeps MoCo's query encoder and drops the momentum encoder and queue); a dict with none of
    the prefixes is taken as already unprefixed."""
    for prefix in prefixes:
        if any(k.startswith(prefix) for k in state):
            return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return dict(state)


def drop_heads(state: StateDict, heads: tuple[str, ...] = SSL_HEADS) -> StateDict:
    """Drop keys whose first component names a head (projection MLPs, prototypes, fc)."""
    return {k: v for k, v in state.items() if k.split(".", 1)[0] not in heads}


def fill_bn_counters(state: StateDict) -> StateDict:
    """Add ``num_batches_tracked`` (0) where a format does not store it (TensorFlow, Haiku, old
    PyTorch): it only matters when training with a cumulative moving average."""
    out = dict(state)
    for key in state:
        if key.endswith(".running_mean"):
            counter = key[: -len("running_mean")] + "num_batches_tracked"
            out.setdefault(counter, torch.tensor(0, dtype=torch.long))
    return out


def convert_moco(obj: Any) -> StateDict:
    """MoCo-v1/v2 and PCL-v1/v2: ``{'state_dict': {'module.encoder_q.<torchvision name>'}}``;
    ``encoder_q.fc`` is the projection head (a Linear in v1, an MLP in v2)."""
    state = as_state_dict(unwrap_state_dict(obj), "MoCo/PCL checkpoint")
    state = select_prefix(state, ("module.encoder_q.", "encoder_q.", "module."))
    return fill_bn_counters(drop_heads(state))


def convert_pycontrast(obj: Any) -> StateDict:
    """InsDis, PIRL, InfoMin (PyContrast): ``{'model': {'module.encoder.<torchvision name>',
    'module.head…', PIRL's 'module.head_jig…'}, 'model_ema': …, 'contrast': …}``."""
    state = as_state_dict(unwrap_state_dict(obj), "PyContrast checkpoint")
    state = select_prefix(state, ("module.encoder.", "encoder.", "module."))
    return fill_bn_counters(drop_heads(state))


def convert_swav(obj: Any) -> StateDict:
    """SwAV, DeepCluster-v2, SeLa-v2 (facebookresearch/swav): a plain state dict with
    ``module.`` prefixes, ``projection_head`` and ``prototypes`` heads."""
    state = as_state_dict(unwrap_state_dict(obj), "SwAV-family checkpoint")
    state = select_prefix(state, ("module.",))
    return fill_bn_counters(drop_heads(state))


def convert_torchvision(obj: Any) -> StateDict:
    """A torchvision state dict (possibly wrapped or ``module.``-prefixed); the classifier stays."""
    state = as_state_dict(unwrap_state_dict(obj), "torchvision checkpoint")
    return fill_bn_counters(select_prefix(state, ("module.",)))


def resnet50_tf_order() -> tuple[list[str], list[str]]:
    """torchvision's conv and batch-norm module names in the order TensorFlow's ResNet (SimCLR)
    creates them: per block the projection shortcut comes before the three convolutions."""
    convs, bns = ["conv1"], ["bn1"]
    for layer, blocks in enumerate((3, 4, 6, 3), start=1):
        for b in range(blocks):
            p = f"layer{layer}.{b}."
            if b == 0:
                convs.append(p + "downsample.0")
                bns.append(p + "downsample.1")
            convs += [p + "conv1", p + "conv2", p + "conv3"]
            bns += [p + "bn1", p + "bn2", p + "bn3"]
    return convs, bns


def _conv(array: np.ndarray | torch.Tensor, hwio: bool) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(array, dtype=np.float32) if hwio else array)
    return tensor.permute(3, 2, 0, 1).contiguous() if hwio else tensor.float()


def _vector(array: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array, dtype=np.float32)).reshape(-1).contiguous()


def _tf_index(name: str, base: str) -> int | None:
    match = re.fullmatch(re.escape(base) + r"(?:_(\d+))?", name)
    return None if match is None else int(match.group(1) or 0)


def convert_simclr_tf(variables: Mapping[str, np.ndarray]) -> StateDict:
    """SimCLR-v1/v2 TensorFlow variables -> torchvision, matched by creation order.

    ``base_model/conv2d[_N]/kernel`` (HWIO) and ``base_model/batch_normalization[_N]/{gamma,
    beta, moving_mean, moving_variance}``, sorted by N, follow the order of
    ``resnet50_tf_order`` (the order tonylins/simclr-converter and Separius/SimCLRv2-Pytorch
    rely on). Optimiser slots (``…/Momentum``), the EMA copy and the heads are ignored."""
    convs: dict[int, np.ndarray] = {}
    bns: dict[int, dict[str, np.ndarray]] = {}
    for name, value in variables.items():
        parts = name.split("/")
        if len(parts) != 3 or parts[0] != "base_model" or name.endswith("Momentum"):
            continue
        if (i := _tf_index(parts[1], "conv2d")) is not None and parts[2] == "kernel":
            convs[i] = value
        elif (i := _tf_index(parts[1], "batch_normalization")) is not None:
            bns.setdefault(i, {})[parts[2]] = value
    conv_names, bn_names = resnet50_tf_order()
    if len(convs) != len(conv_names) or len(bns) != len(bn_names):
        raise LceError(
            f"SimCLR checkpoint: found {len(convs)} convolutions and {len(bns)} batch norms "
            f"under base_model/, a ResNet-50 (1x, no selective kernels) has "
            f"{len(conv_names)} and {len(bn_names)}"
        )
    state: StateDict = {}
    for name, (_, kernel) in zip(conv_names, sorted(convs.items()), strict=True):
        state[name + ".weight"] = _conv(kernel, hwio=True)
    for name, (_, bn) in zip(bn_names, sorted(bns.items()), strict=True):
        missing = {"gamma", "beta", "moving_mean", "moving_variance"} - set(bn)
        if missing:
            raise LceError(f"SimCLR checkpoint: batch norm for {name} lacks {sorted(missing)}")
        state[name + ".weight"] = _vector(bn["gamma"])
        state[name + ".bias"] = _vector(bn["beta"])
        state[name + ".running_mean"] = _vector(bn["moving_mean"])
        state[name + ".running_var"] = _vector(bn["moving_variance"])
    return fill_bn_counters(state)


def convert_simclr_torch(obj: Any) -> StateDict:
    """A SimCLR checkpoint already converted to PyTorch by the tools ssl-transfer names:
    tonylins/simclr-converter (``{'state_dict': <torchvision names + fc>}``) or
    Separius/SimCLRv2-Pytorch (``{'resnet': <its own names>, 'head': …}``, modules registered in
    TensorFlow's order, so they are matched by order and checked by shape)."""
    state = as_state_dict(unwrap_state_dict(obj, ("state_dict", "resnet", "model")), "SimCLR")
    state = select_prefix(state, ("module.",))
    if "layer1.0.conv1.weight" in state:
        return fill_bn_counters(drop_heads(state))
    convs = [k for k, v in state.items() if v.dim() == 4]
    bns = [k[: -len(".running_mean")] for k in state if k.endswith(".running_mean")]
    conv_names, bn_names = resnet50_tf_order()
    if len(convs) != len(conv_names) or len(bns) != len(bn_names):
        raise LceError(
            f"SimCLR PyTorch checkpoint: {len(convs)} convolutions and {len(bns)} batch norms, "
            f"expected {len(conv_names)} and {len(bn_names)} (ResNet-50 1x without selective kernels)"
        )
    out: StateDict = {}
    for target, source in zip(conv_names, convs, strict=True):
        out[target + ".weight"] = state[source].float()
    for target, source in zip(bn_names, bns, strict=True):
        for suffix in ("weight", "bias", "running_mean", "running_var"):
            out[f"{target}.{suffix}"] = state[f"{source}.{suffix}"].float()
    return fill_bn_counters(out)


_HAIKU_BLOCK = re.compile(r"block_group_(\d+)/~/block_(\d+)/~/(conv|batchnorm)_(\d+)$")
_HAIKU_SHORTCUT = re.compile(r"block_group_(\d+)/~/block_(\d+)/~/shortcut_(conv|batchnorm)$")


def _haiku_to_torchvision(module: str) -> str | None:
    if module.endswith("initial_conv"):
        return "conv1"
    if module.endswith("initial_batchnorm"):
        return "bn1"
    if m := _HAIKU_BLOCK.search(module):
        kind = "conv" if m[3] == "conv" else "bn"
        return f"layer{int(m[1]) + 1}.{int(m[2])}.{kind}{int(m[4]) + 1}"
    if m := _HAIKU_SHORTCUT.search(module):
        return f"layer{int(m[1]) + 1}.{int(m[2])}.downsample.{0 if m[3] == 'conv' else 1}"
    return None


def convert_byol(tree: Any) -> StateDict:
    """BYOL (deepmind-research/byol, Haiku): the online network's ``…/initial_conv``,
    ``…/block_group_G/~/block_B/~/conv_I`` (HWIO ``w``) and ``batchnorm_I`` (``scale``,
    ``offset``; state ``…/~/mean_ema`` and ``…/~/var_ema`` ``average``) -> torchvision names.
    The projector and predictor MLPs are ignored."""
    params, state = find_haiku_trees(tree)
    out: StateDict = {}
    for module, arrays in params.items():
        target = _haiku_to_torchvision(module)
        if target is None:
            continue
        if target.endswith(("conv1", "conv2", "conv3", "downsample.0")):
            out[target + ".weight"] = _conv(arrays["w"], hwio=True)
        else:
            out[target + ".weight"] = _vector(arrays["scale"])
            out[target + ".bias"] = _vector(arrays["offset"])
    for module, arrays in state.items():
        base, _, stat = module.rpartition("/~/")
        target = _haiku_to_torchvision(base)
        if target is None or stat not in {"mean_ema", "var_ema"} or "average" not in arrays:
            continue
        suffix = "running_mean" if stat == "mean_ema" else "running_var"
        out[f"{target}.{suffix}"] = _vector(arrays["average"])
    return fill_bn_counters(out)
