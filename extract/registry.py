"""The model zoo: the ResNet-50s of Ericsson et al. (CVPR 2021) that the paper dissected.

Each entry names the published checkpoint (as listed by linusericsson/ssl-transfer's
``download_and_prepare_models.py`` and readme), the format it comes in, the conversion that
turns it into a torchvision ``resnet50`` state dict (``extract.formats``), the input
normalisation it was trained with, and a checksum where its publisher gives one.

``lce extract mocov2 ...`` downloads the checkpoint once into ``$LCE_CACHE/models/<name>/``
(resumable, verified), converts it in memory, and loads it strictly into torchvision's ResNet-50.
``--weights FILE`` with a registry name converts a local copy in the same format instead.
This module imports torch only when a model is actually built, so ``lce models`` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from base.download import cache_dir, download
from base.errors import LceError

if TYPE_CHECKING:
    from torch import nn

    from extract.formats import StateDict

RANDOM_SEED = 0


@dataclass(frozen=True)
class Remote:
    """One published file: its address and the checksums its publisher gives (if any)."""

    url: str
    sha256: str | None = None  # full digest, or the prefix a publisher puts in the file name
    md5: str | None = None  # a published md5 (prefix)
    filename: str | None = None  # name in the cache [default: the address's last component]

    @property
    def name(self) -> str:
        return self.filename or Path(urlsplit(self.url).path).name


@dataclass(frozen=True)
class ModelEntry:
    name: str
    title: str
    source: str
    files: tuple[Remote, ...]
    format: str
    normalize: str  # imagenet | none: what the model was trained on
    arch: str = "resnet50"
    classifier: bool = False  # the checkpoint has an ImageNet classifier (torchvision's fc)

    @property
    def checksum(self) -> str:
        if not self.files:
            return "-"
        first = self.files[0]
        if first.sha256:
            return f"sha256 {first.sha256}" + ("" if len(first.sha256) == 64 else "…")
        if first.md5:
            return f"md5 {first.md5}…"
        return "recorded at first download"


FORMATS: dict[str, str] = {
    "moco": "{'state_dict': {'module.encoder_q.*'}}; keep encoder_q, drop encoder_k, queue and "
    "the encoder_q.fc projection head",
    "pycontrast": "{'model': {'module.encoder.*'}}; keep the encoder, drop module.head* "
    "(PIRL: head_jig/jigsaw) and fc",
    "swav": "state dict with 'module.' prefixes; drop projection_head and prototypes",
    "byol-haiku": "JAX/Haiku pickle; online params + batch-norm EMA state, HWIO kernels -> "
    "torchvision names; drop projector/predictor",
    "simclr-tf": "TensorFlow checkpoint (base_model/conv2d_N, batch_normalization_N in "
    "creation order, HWIO); drop heads and optimiser slots. Also reads the PyTorch files of "
    "tonylins/simclr-converter and Separius/SimCLRv2-Pytorch",
    "torchvision": "torchvision state dict (classifier kept)",
    "random": f"no checkpoint: torchvision init under torch.manual_seed({RANDOM_SEED})",
}

_FB = "https://dl.fbaipublicfiles.com"
_PYCONTRAST = "https://www.dropbox.com/sh/87d24jqsl6ra7t2"
_SIMCLR2 = "https://storage.googleapis.com/simclr-checkpoints/simclrv2/pretrained/r50_1x_sk0"

REGISTRY: tuple[ModelEntry, ...] = (
    ModelEntry(
        "insdis", "InsDis", "Wu et al. 2018, PyContrast model zoo (HobbitLong/PyContrast)",
        (Remote(f"{_PYCONTRAST}/AACcsSIt1_Njv7GsmsuzZ6Sta/InsDis.pth?dl=1"),),
        "pycontrast", "imagenet",
    ),
    ModelEntry(
        "mocov1", "MoCo-v1", "He et al. 2020, facebookresearch/moco (200 epochs)",
        (Remote(f"{_FB}/moco/moco_checkpoints/moco_v1_200ep/moco_v1_200ep_pretrain.pth.tar",
                md5="b251726a"),),
        "moco", "imagenet",
    ),
    ModelEntry(
        "mocov2", "MoCo-v2", "Chen et al. 2020, facebookresearch/moco (800 epochs)",
        (Remote(f"{_FB}/moco/moco_checkpoints/moco_v2_800ep/moco_v2_800ep_pretrain.pth.tar",
                md5="a04e12f8"),),
        "moco", "imagenet",
    ),
    ModelEntry(
        "pclv1", "PCL-v1", "Li et al. 2021, salesforce/PCL (200 epochs)",
        (Remote("https://storage.googleapis.com/sfr-pcl-data-research/PCL_checkpoint/"
                "PCL_v1_epoch200.pth.tar"),),
        "moco", "imagenet",
    ),
    ModelEntry(
        "pclv2", "PCL-v2", "Li et al. 2021, salesforce/PCL (200 epochs)",
        (Remote("https://storage.googleapis.com/sfr-pcl-data-research/PCL_checkpoint/"
                "PCL_v2_epoch200.pth.tar"),),
        "moco", "imagenet",
    ),
    ModelEntry(
        "pirl", "PIRL", "Misra & van der Maaten 2020, PyContrast model zoo",
        (Remote(f"{_PYCONTRAST}/AADN4jKnvTI0U5oT6hTmQZz8a/PIRL.pth?dl=1"),),
        "pycontrast", "imagenet",
    ),
    ModelEntry(
        "simclrv1", "SimCLR-v1", "Chen et al. 2020, google-research/simclr (ResNet50_1x)",
        (Remote("https://storage.googleapis.com/simclr-gcs/checkpoints/ResNet50_1x.zip"),),
        "simclr-tf", "none",
    ),
    ModelEntry(
        "simclrv2", "SimCLR-v2", "Chen et al. 2020, google-research/simclr (r50_1x_sk0)",
        (Remote(f"{_SIMCLR2}/model.ckpt-250228.index"),
         Remote(f"{_SIMCLR2}/model.ckpt-250228.data-00000-of-00001")),
        "simclr-tf", "none",
    ),
    ModelEntry(
        "selav2", "SeLa-v2", "Caron et al. 2020, facebookresearch/swav (400 epochs)",
        (Remote(f"{_FB}/deepcluster/selav2_400ep_pretrain.pth.tar"),),
        "swav", "imagenet",
    ),
    ModelEntry(
        "infomin", "InfoMin", "Tian et al. 2020, PyContrast model zoo (800 epochs)",
        (Remote(f"{_PYCONTRAST}/AAAzMTynP3Qc8mIE4XWkgILUa/InfoMin_800.pth?dl=1"),),
        "pycontrast", "imagenet",
    ),
    ModelEntry(
        "byol", "BYOL", "Grill et al. 2020, deepmind-research/byol (res50x1)",
        (Remote("https://storage.googleapis.com/deepmind-byol/checkpoints/pretrain_res50x1.pkl"),),
        "byol-haiku", "imagenet",
    ),
    ModelEntry(
        "deepclusterv2", "DeepCluster-v2", "Caron et al. 2020, facebookresearch/swav (800 epochs)",
        (Remote(f"{_FB}/deepcluster/deepclusterv2_800ep_pretrain.pth.tar"),),
        "swav", "imagenet",
    ),
    ModelEntry(
        "swav", "SwAV", "Caron et al. 2020, facebookresearch/swav (800 epochs)",
        (Remote(f"{_FB}/deepcluster/swav_800ep_pretrain.pth.tar"),),
        "swav", "imagenet",
    ),
    ModelEntry(
        "supervised", "Supervised", "torchvision ResNet50_Weights.IMAGENET1K_V1",
        (Remote("https://download.pytorch.org/models/resnet50-0676ba61.pth", sha256="0676ba61"),),
        "torchvision", "imagenet", classifier=True,
    ),
    ModelEntry(
        "random", "Random init", f"torchvision resnet50, random init, seed {RANDOM_SEED}",
        (), "random", "imagenet", classifier=True,
    ),
)  # fmt: skip


def canonical(name: str) -> str:
    """Registry names ignore case, '-', '_' and spaces: ``MoCo-v2`` = ``moco_v2`` = ``mocov2``."""
    return "".join(ch for ch in name.lower() if ch not in "-_ ")


_BY_NAME = {canonical(e.name): e for e in REGISTRY} | {canonical(e.title): e for e in REGISTRY}


def lookup(spec: str) -> ModelEntry | None:
    """The registry entry a MODEL argument names (specs with a ':' never do)."""
    return None if ":" in spec else _BY_NAME.get(canonical(spec))


def model_cache(entry: ModelEntry) -> Path:
    return cache_dir() / "models" / entry.name


def fetch(entry: ModelEntry, progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Download the entry's files into the cache (resuming a broken transfer, verifying the
    published or first-seen checksum) and return the main one. Offline, the error names the
    address and how to use a local copy."""
    folder = model_cache(entry)
    paths = []
    for remote in entry.files:
        try:
            with _download_bar(f"{entry.name}: {remote.name}", progress) as report:
                path = download(
                    remote.url,
                    folder / remote.name,
                    remote.sha256,
                    timeout=60.0,
                    progress=report,
                    md5=remote.md5,
                    resume=True,
                )
            paths.append(path)
        except LceError as exc:
            raise LceError(
                f"{entry.name}: cannot fetch the checkpoint from {remote.url} ({exc}); "
                f"download it yourself and pass it with `lce extract {entry.name} --weights FILE`"
            ) from None
    return paths[0]


@contextmanager
def _download_bar(
    label: str, progress: Callable[[int, int | None], None] | None
) -> Iterator[Callable[[int, int | None], None] | None]:
    """A transient byte-count bar on stderr while a checkpoint downloads (terminals only)."""
    if progress is not None or not sys.stderr.isatty():
        yield progress
        return
    from rich.console import Console
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    columns = (*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)

        def report(received: int, total: int | None) -> None:
            bar.update(task, completed=received, total=total)

        yield report


def read_checkpoint(entry: ModelEntry, path: Path) -> Any:
    """The object a checkpoint file holds, read the way its format needs (no code from it runs)."""
    from extract import formats, formats_tf

    path = Path(path)
    if not path.is_file():
        raise LceError(f"{path}: weights file not found")
    if entry.format == "byol-haiku" and path.suffix != ".pth":
        return formats.read_pickle_safely(path)
    if entry.format == "simclr-tf":

        def keep(name: str) -> bool:
            return name.startswith("base_model/") and not name.endswith("Momentum")

        if path.suffix == ".zip" and not _is_torch_zip(path):
            index = formats_tf.extract_tf_zip(path, path.with_name(path.stem + ".ckpt"))
            return formats_tf.read_tf_checkpoint(index, keep)
        if path.suffix == ".index" or ".data-" in path.name:
            index = (
                path if path.suffix == ".index" else path.with_name(path.name.split(".data-")[0])
            )
            return formats_tf.read_tf_checkpoint(index, keep)
    return formats.read_torch_file(path)


def _is_torch_zip(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("data.pkl") for n in zf.namelist())
    except zipfile.BadZipFile:
        return False


def convert(entry: ModelEntry, obj: Any) -> StateDict:
    """The conversion the entry's format needs: checkpoint object -> torchvision state dict."""
    from extract import formats

    if entry.format == "simclr-tf":
        is_tf = isinstance(obj, dict) and any(k.startswith("base_model/") for k in obj)
        return formats.convert_simclr_tf(obj) if is_tf else formats.convert_simclr_torch(obj)
    if entry.format == "byol-haiku" and not isinstance(obj, formats.Opaque):
        inner = formats.unwrap_state_dict(obj)
        if isinstance(inner, dict) and "conv1.weight" in inner:  # already converted to PyTorch
            return formats.drop_heads(formats.convert_torchvision(inner))
    conversions: dict[str, Callable[[Any], StateDict]] = {
        "moco": formats.convert_moco,
        "pycontrast": formats.convert_pycontrast,
        "swav": formats.convert_swav,
        "byol-haiku": formats.convert_byol,
        "torchvision": formats.convert_torchvision,
    }
    if entry.format not in conversions:
        raise LceError(f"{entry.name}: format {entry.format!r} has no checkpoint to convert")
    return conversions[entry.format](obj)


def build(entry: ModelEntry) -> nn.Module:
    """torchvision's architecture for the entry; without a classifier in the checkpoint ``fc``
    becomes an identity (the model then returns pooled features, as in ssl-transfer).

    Weights are initialised under a fixed seed (without touching the caller's random state),
    which makes the random-init control reproducible."""
    import torch
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        module = torchvision.models.get_model(entry.arch, weights=None)
    if not entry.classifier:
        module.fc = torch.nn.Identity()
    return module


def checkpoint_state(entry: ModelEntry, weights: Path | None) -> StateDict | None:
    """The converted state dict from ``weights`` or the (downloaded) published checkpoint;
    None for the random-init control."""
    if entry.format == "random":
        if weights is not None:
            raise LceError(f"{entry.name}: the random-init control takes no --weights")
        return None
    path = Path(weights) if weights is not None else fetch(entry)
    return convert(entry, read_checkpoint(entry, path))


def rows() -> list[dict[str, str]]:
    """The registry as rows for `lce models` and the README."""
    return [
        {
            "name": e.name,
            "model": e.title,
            "source": e.source,
            "checkpoint": " + ".join(r.url for r in e.files) or "-",
            "format": e.format,
            "normalisation": e.normalize,
            "checksum": e.checksum,
        }
        for e in REGISTRY
    ]
