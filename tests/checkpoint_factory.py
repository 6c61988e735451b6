"""Checkpoints in the published formats, written by the tests from a random torchvision ResNet-50.

Nothing here uses lce: the TensorFlow TensorBundle writer, the Haiku-style pickle and the
PyTorch wrappings are written from the formats' own descriptions, so the readers and conversions
under test are checked against an independent producer.
"""

from __future__ import annotations

import collections
import struct
import sys
import types
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torchvision

SEED = 123


def random_resnet50() -> torch.nn.Module:
    """A ResNet-50 whose every parameter and batch-norm statistic is random (so a swapped mean
    and variance, or a wrong permutation, changes the output)."""
    gen = torch.Generator().manual_seed(SEED)
    model = torchvision.models.resnet50()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                tensor.fill_(7)
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif name.endswith(("running_mean", ".bias")):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
            elif tensor.dim() == 1:  # batch-norm scales
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            else:
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
    return model.eval()


def backbone(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("fc.")}


def layer4(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    m = model
    with torch.no_grad():
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        return m.layer4(m.layer3(m.layer2(m.layer1(x))))


def _randn(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(7))


# ------------------------------------------------------------------------- PyTorch formats


def moco_checkpoint(model: torch.nn.Module, v2: bool = True) -> dict:
    """facebookresearch/moco's main_moco.py checkpoint (PCL saves the same layout)."""
    sd = {f"module.encoder_q.{k}": v for k, v in backbone(model).items()}
    if v2:
        sd |= {"module.encoder_q.fc.0.weight": _randn(2048, 2048),
               "module.encoder_q.fc.0.bias": _randn(2048),
               "module.encoder_q.fc.2.weight": _randn(128, 2048),
               "module.encoder_q.fc.2.bias": _randn(128)}  # fmt: skip
    else:
        sd |= {"module.encoder_q.fc.weight": _randn(128, 2048),
               "module.encoder_q.fc.bias": _randn(128)}  # fmt: skip
    # the momentum encoder (a few of its keys keep the file small; all would be dropped alike)
    sd |= {f"module.encoder_k.{k}": v + 1 for k, v in list(backbone(model).items())[:12]}
    sd |= {"module.queue": _randn(128, 64), "module.queue_ptr": torch.zeros(1, dtype=torch.long)}
    return {"epoch": 200, "arch": "resnet50", "state_dict": sd, "optimizer": {"state": {}}}


def pycontrast_checkpoint(model: torch.nn.Module, jigsaw: bool = False) -> dict:
    """HobbitLong/PyContrast's checkpoint (InsDis, PIRL, InfoMin)."""
    sd = {f"module.encoder.{k}": v for k, v in backbone(model).items()}
    sd |= {"module.head.0.weight": _randn(2048, 2048), "module.head.2.weight": _randn(128, 2048)}
    if jigsaw:
        sd |= {"module.head_jig.fc1.weight": _randn(128, 2048)}
    ema = {f"encoder.{k}": v * 0 for k, v in list(backbone(model).items())[:12]}
    return {"model": sd, "model_ema": ema, "contrast": {"memory": _randn(4, 128)}, "epoch": 800}


def swav_checkpoint(model: torch.nn.Module, deepcluster: bool = False) -> dict:
    """facebookresearch/swav's released *_pretrain.pth.tar: a bare DataParallel state dict."""
    sd = {f"module.{k}": v for k, v in backbone(model).items()}
    sd |= {"module.projection_head.0.weight": _randn(2048, 2048),
           "module.projection_head.3.weight": _randn(128, 2048)}  # fmt: skip
    if deepcluster:
        sd |= {f"module.prototypes.prototypes{i}.weight": _randn(30, 128) for i in range(3)}
    else:
        sd["module.prototypes.weight"] = _randn(3000, 128)
    return sd


# --------------------------------------------------------------------- TensorFlow (SimCLR)


def tf_order() -> tuple[list[str], list[str]]:
    """Written out independently: TensorFlow's ResNet creates the projection shortcut first."""
    convs, bns = ["conv1"], ["bn1"]
    for li, n in zip((1, 2, 3, 4), (3, 4, 6, 3), strict=True):
        for b in range(n):
            names = (["downsample.0"] if b == 0 else []) + ["conv1", "conv2", "conv3"]
            convs += [f"layer{li}.{b}.{x}" for x in names]
            bn_names = (["downsample.1"] if b == 0 else []) + ["bn1", "bn2", "bn3"]
            bns += [f"layer{li}.{b}.{x}" for x in bn_names]
    return convs, bns


def simclr_variables(model: torch.nn.Module) -> dict[str, np.ndarray]:
    sd = backbone(model)
    convs, bns = tf_order()
    out: dict[str, np.ndarray] = {"global_step": np.array(225206, dtype=np.int64)}
    for i, name in enumerate(convs):
        tf_name = "conv2d" if i == 0 else f"conv2d_{i}"
        kernel = sd[name + ".weight"].permute(2, 3, 1, 0).numpy()  # OIHW -> HWIO
        out[f"base_model/{tf_name}/kernel"] = kernel
        out[f"base_model/{tf_name}/kernel/Momentum"] = kernel * 0 + 3
    for i, name in enumerate(bns):
        tf_name = "batch_normalization" if i == 0 else f"batch_normalization_{i}"
        for tf_key, key in (("gamma", "weight"), ("beta", "bias"),
                            ("moving_mean", "running_mean"), ("moving_variance", "running_var")):  # fmt: skip
            out[f"base_model/{tf_name}/{tf_key}"] = sd[f"{name}.{key}"].numpy()
    out["head_supervised/linear_layer/dense/kernel"] = np.ones((2048, 1000), np.float32)
    out["head_contrastive/nl_0/dense/kernel"] = np.ones((2048, 2048), np.float32)
    return out


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    return _varint(number << 3 | 2) + _varint(len(value)) + value


_DTYPE = {np.dtype("float32"): 1, np.dtype("int64"): 9}


def _table_block(items: list[tuple[bytes, bytes]]) -> bytes:
    """A LevelDB block with prefix-compressed keys and one restart point."""
    block, prev = bytearray(), b""
    for key, value in items:
        shared = 0
        while shared < min(len(key), len(prev)) and key[shared] == prev[shared]:
            shared += 1
        block += _varint(shared) + _varint(len(key) - shared) + _varint(len(value))
        block += key[shared:] + value
        prev = key
    return bytes(block + struct.pack("<II", 0, 1))


def write_tf_checkpoint(prefix: Path, variables: dict[str, np.ndarray]) -> Path:
    """A TensorBundle checkpoint: PREFIX.index (SSTable of BundleEntryProto) + one data shard."""
    data = bytearray()
    entries = []
    for name in sorted(variables):
        arr = np.ascontiguousarray(variables[name])
        shape = b"".join(_field(2, _field(1, d)) for d in arr.shape)
        entry = _field(1, _DTYPE[arr.dtype]) + _field(2, shape)
        if len(data):
            entry += _field(4, len(data))
        entry += _field(5, arr.nbytes) + _varint(6 << 3 | 5) + b"\0\0\0\0"
        data += arr.tobytes()
        entries.append((name.encode(), entry))
    header = _field(1, 1) + _field(3, _field(1, 1))
    prefix.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{prefix}.data-00000-of-00001").write_bytes(bytes(data))
    table = bytearray()
    data_block = _table_block([(b"", header), *entries])
    table += data_block + b"\0\0\0\0\0"
    meta_offset = len(table)
    meta_block = struct.pack("<II", 0, 1)
    table += meta_block + b"\0\0\0\0\0"
    index_offset = len(table)
    index_block = _table_block([(entries[-1][0] + b"\xff", _varint(0) + _varint(len(data_block)))])
    table += index_block + b"\0\0\0\0\0"
    handles = _varint(meta_offset) + _varint(len(meta_block))
    handles += _varint(index_offset) + _varint(len(index_block))
    table += handles.ljust(40, b"\0") + struct.pack("<Q", 0xDB4775248B80FB57)
    index = Path(f"{prefix}.index")
    index.write_bytes(bytes(table))
    return index


def simclr_zip(path: Path, model: torch.nn.Module) -> Path:
    """SimCLR-v1's release: ResNet50_1x/model.ckpt-225206.{index,data-…} (+ a checkpoint file)."""
    folder = path.parent / "unzipped"
    index = write_tf_checkpoint(folder / "model.ckpt-225206", simclr_variables(model))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ResNet50_1x/checkpoint", 'model_checkpoint_path: "model.ckpt-225206"\n')
        zf.write(index, "ResNet50_1x/model.ckpt-225206.index")
        zf.write(f"{folder}/model.ckpt-225206.data-00000-of-00001",
                 "ResNet50_1x/model.ckpt-225206.data-00000-of-00001")  # fmt: skip
    return path


def separius_checkpoint(model: torch.nn.Module) -> dict:
    """Separius/SimCLRv2-Pytorch's output: its own module names, registered in TF order."""
    sd = backbone(model)
    convs, bns = tf_order()
    resnet: dict[str, torch.Tensor] = {}
    for i, (conv, bn) in enumerate(zip(convs, bns, strict=True)):
        # each conv is followed by its batch norm, as the blocks are written
        resnet[f"net.{i}.conv.weight"] = sd[conv + ".weight"]
        for key in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            resnet[f"net.{i}.bn.bn.{key}"] = sd[f"{bn}.{key}"]
    resnet["fc.weight"] = _randn(1000, 2048)
    resnet["fc.bias"] = _randn(1000)
    return {"resnet": resnet, "head": {"layers.0.weight": _randn(2048, 2048)}}


# ------------------------------------------------------------------------- BYOL (Haiku)


def _haiku_name(torch_name: str) -> str:
    """torchvision module name -> BYOL's Haiku module path (ResNet50 -> 'res_net50')."""
    if torch_name == "conv1":
        return "res_net50/~/initial_conv"
    if torch_name == "bn1":
        return "res_net50/~/initial_batchnorm"
    layer, block, rest = torch_name.split(".", 2)
    base = f"res_net50/~/block_group_{int(layer[5:]) - 1}/~/block_{block}/~/"
    if rest == "downsample.0":
        return base + "shortcut_conv"
    if rest == "downsample.1":
        return base + "shortcut_batchnorm"
    kind, index = rest[:-1], int(rest[-1]) - 1
    return base + ("conv" if kind == "conv" else "batchnorm") + f"_{index}"


@contextmanager
def fake_haiku_modules() -> Iterator[tuple[type, type]]:
    """Stand-ins for haiku's frozendict and BYOL's _ByolExperimentState, registered under their
    real module names just long enough to pickle them (lce must read them without either)."""

    class FrozenDict:
        def __init__(self, storage: dict) -> None:
            self._storage = dict(storage)

        def __reduce__(self) -> tuple:
            return (FrozenDict, (self._storage,))

    state_cls = collections.namedtuple(
        "_ByolExperimentState",
        ["online_params", "target_params", "online_state", "target_state", "opt_state"],
    )
    names = ["haiku", "haiku._src", "haiku._src.data_structures", "byol", "byol.byol_experiment"]
    saved = {n: sys.modules.get(n) for n in names}
    mods = {n: types.ModuleType(n) for n in names}
    FrozenDict.__module__ = "haiku._src.data_structures"
    FrozenDict.__qualname__ = FrozenDict.__name__ = "frozendict"
    mods["haiku._src.data_structures"].frozendict = FrozenDict  # type: ignore[attr-defined]
    state_cls.__module__ = "byol.byol_experiment"
    mods["byol.byol_experiment"]._ByolExperimentState = state_cls  # type: ignore[attr-defined]
    sys.modules.update(mods)
    try:
        yield FrozenDict, state_cls
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def byol_pickle(path: Path, model: torch.nn.Module) -> Path:
    """BYOL's pretrain_res50x1.pkl layout: {'experiment_state': _ByolExperimentState(...),
    'step', 'rng'} with Haiku params (HWIO 'w'; 'scale'/'offset' of shape (1, 1, 1, C)) and
    batch-norm state ('…/~/mean_ema' / '…/~/var_ema' with 'average')."""
    import pickle

    sd = backbone(model)
    modules = sorted({k.rsplit(".", 1)[0] for k in sd})
    with fake_haiku_modules() as (frozen, state_cls):

        def tree(shift: float) -> tuple[object, object]:
            params, state = {}, {}
            for m in modules:
                hk = _haiku_name(m)
                if sd[m + ".weight"].dim() == 4:
                    w = sd[m + ".weight"].permute(2, 3, 1, 0).numpy() + shift
                    params[hk] = frozen({"w": w})
                else:
                    c = sd[m + ".weight"].numel()
                    params[hk] = frozen({
                        "scale": sd[m + ".weight"].numpy().reshape(1, 1, 1, c) + shift,
                        "offset": sd[m + ".bias"].numpy().reshape(1, 1, 1, c),
                    })  # fmt: skip
                    for stat, key in (("mean_ema", "running_mean"), ("var_ema", "running_var")):
                        state[f"{hk}/~/{stat}"] = frozen({
                            "average": sd[f"{m}.{key}"].numpy().reshape(1, 1, 1, c) + shift,
                            "counter": np.array(5, np.int32),
                            "hidden": np.zeros((1, 1, 1, c), np.float32),
                        })  # fmt: skip
            params["projector/~/linear"] = frozen({"w": np.ones((2048, 4096), np.float32)})
            params["predictor/~/linear"] = frozen({"w": np.ones((256, 4096), np.float32)})
            return frozen(params), frozen(state)

        online_params, online_state = tree(0.0)
        target_params, target_state = tree(1.0)
        opt_state = (tree(2.0)[0],)
        experiment = state_cls(online_params, target_params, online_state, target_state, opt_state)
        blob = {"experiment_state": experiment, "step": 300000, "rng": np.zeros(2, np.uint32)}
        with path.open("wb") as fh:
            pickle.dump(blob, fh, protocol=4)
    return path
