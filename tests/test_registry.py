"""The model zoo: every published format converts to torchvision's ResNet-50 exactly.

A random ResNet-50 (every weight and batch-norm statistic random) is saved in each source format
by tests/checkpoint_factory.py; the registry must load it strictly (no missing keys: the formats
carry no classifier, and the registry's model has none) and reproduce the original's layer4.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from base.errors import LceError
from extract import formats, formats_tf, registry
from extract.models import load_model
from tests import checkpoint_factory as cf
from tests.conftest import lce
from tests.http_fixture import RangeServer, serve


@pytest.fixture
def range_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[RangeServer]:
    yield from serve(monkeypatch)


X = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def original() -> torch.nn.Module:
    return cf.random_resnet50()


@pytest.fixture(scope="module")
def expected(original: torch.nn.Module) -> torch.Tensor:
    return cf.layer4(original, X)


@pytest.fixture(scope="module")
def files(original: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each format written once: name -> file."""
    d = tmp_path_factory.mktemp("checkpoints")
    out = {
        "moco_v2": d / "moco_v2.pth.tar",
        "moco_v1": d / "moco_v1.pth.tar",
        "pycontrast": d / "InfoMin_800.pth",
        "pirl": d / "PIRL.pth",
        "swav": d / "swav.pth.tar",
        "deepcluster": d / "deepclusterv2.pth.tar",
        "supervised": d / "resnet50.pth",
    }
    torch.save(cf.moco_checkpoint(original, v2=True), out["moco_v2"])
    torch.save(cf.moco_checkpoint(original, v2=False), out["moco_v1"])
    torch.save(cf.pycontrast_checkpoint(original), out["pycontrast"])
    torch.save(cf.pycontrast_checkpoint(original, jigsaw=True), out["pirl"])
    torch.save(cf.swav_checkpoint(original), out["swav"])
    torch.save(cf.swav_checkpoint(original, deepcluster=True), out["deepcluster"])
    torch.save(original.state_dict(), out["supervised"])
    out["byol"] = cf.byol_pickle(d / "pretrain_res50x1.pkl", original)
    out["simclr_zip"] = cf.simclr_zip(d / "ResNet50_1x.zip", original)
    out["simclr_index"] = cf.write_tf_checkpoint(
        d / "r50_1x_sk0" / "model.ckpt-250228", cf.simclr_variables(original)
    )
    out["tonylins"] = d / "resnet50-1x.pth"
    torch.save({"state_dict": original.state_dict()}, out["tonylins"])
    out["separius"] = d / "r50_1x_sk0.pth"
    torch.save(cf.separius_checkpoint(original), out["separius"])
    return out


# one case per format variant (PCL shares MoCo's format, InsDis PyContrast's, SeLa-v2 SwAV's;
# test_every_registry_entry_has_a_tested_format checks that none is left out)
CASES = [
    ("mocov2", "moco_v2"),
    ("mocov1", "moco_v1"),
    ("infomin", "pycontrast"),
    ("pirl", "pirl"),
    ("swav", "swav"),
    ("deepclusterv2", "deepcluster"),
    ("byol", "byol"),
    ("simclrv1", "simclr_zip"),
    ("simclrv2", "simclr_index"),
    ("simclrv1", "tonylins"),
    ("simclrv2", "separius"),
    ("supervised", "supervised"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "fmt"), CASES)
def test_conversion_reproduces_the_original(
    name: str,
    fmt: str,
    files: dict[str, Path],
    original: torch.nn.Module,
    expected: torch.Tensor,
) -> None:
    loaded = load_model(name, files[fmt], strict=True)
    assert loaded.missing_keys == [] and loaded.unexpected_keys == []
    assert loaded.name == name
    got = loaded.module.state_dict()
    for key, value in original.state_dict().items():
        if key.startswith("fc.") and not registry.lookup(name).classifier:  # type: ignore[union-attr]
            assert key not in got  # no random classifier is left behind
            continue
        if key.endswith("num_batches_tracked"):
            continue
        assert torch.equal(got[key], value), key
    torch.testing.assert_close(cf.layer4(loaded.module, X), expected, rtol=0, atol=0)


def test_every_registry_entry_has_a_tested_format() -> None:
    tested = {registry.lookup(name).format for name, _ in CASES}  # type: ignore[union-attr]
    assert {e.format for e in registry.REGISTRY} - tested == {"random"}


def test_conversion_is_a_plain_function_with_only_the_backbone(original: torch.nn.Module) -> None:
    state = formats.convert_moco(cf.moco_checkpoint(original))
    assert set(state) == set(cf.backbone(original))  # no encoder_k, queue or fc
    swav = formats.convert_swav(cf.swav_checkpoint(original, deepcluster=True))
    assert set(swav) == set(cf.backbone(original))


@pytest.mark.slow
def test_byol_takes_the_online_network_and_runs_no_code(files: dict[str, Path]) -> None:
    # the pickle names haiku and BYOL classes that are not importable here: they become inert
    tree = formats.read_pickle_safely(files["byol"])
    params, state = formats.find_haiku_trees(tree)
    assert "res_net50/~/initial_conv" in params
    with pytest.raises(ModuleNotFoundError):
        pickle.loads(files["byol"].read_bytes())  # the plain unpickler would need haiku


def test_malicious_pickle_is_inert(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple:
            return (Path.touch, (tmp_path / "pwned",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"x": Evil()}))
    tree = formats.read_pickle_safely(path)
    assert not (tmp_path / "pwned").exists()
    assert isinstance(tree["x"], formats.Opaque)


def test_tf_reader_reads_every_variable(tmp_path: Path) -> None:
    variables = {
        "a/b": np.arange(6, dtype=np.float32).reshape(2, 3),
        "a/bc": np.array([1.5], dtype=np.float32),
        "step": np.array(42, dtype=np.int64),
    }
    index = cf.write_tf_checkpoint(tmp_path / "model.ckpt-1", variables)
    got = formats_tf.read_tf_checkpoint(index)
    assert set(got) == set(variables)
    for k, v in variables.items():
        np.testing.assert_array_equal(got[k], v)
        assert got[k].dtype == v.dtype
    assert set(formats_tf.read_tf_checkpoint(tmp_path / "model.ckpt-1", lambda n: n == "a/b")) == {
        "a/b"
    }


def test_tf_reader_on_a_checkpoint_tensorflow_wrote() -> None:
    """tests/data/tf_checkpoint was written by TensorFlow 2.21 (tf.compat.v1.train.Saver) with
    these values: a multi-block index with prefix-compressed keys, three dtypes."""
    expected = {
        f"base_model/layer_{i:03d}/kernel": np.arange(3 * (i % 5 + 1), dtype=np.float32).reshape(
            3, i % 5 + 1
        )
        + i
        for i in range(300)
    }
    expected["global_step"] = np.array(250228, dtype=np.int64)
    expected["head/bias"] = np.linspace(-1, 1, 7).astype(np.float64)
    got = formats_tf.read_tf_checkpoint(Path(__file__).parent / "data/tf_checkpoint/model.ckpt-1")
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key].dtype == value.dtype, key
        np.testing.assert_array_equal(got[key], value)


def test_random_control_is_reproducible() -> None:
    a = load_model("random", None).module.state_dict()
    torch.manual_seed(999)  # the caller's random state does not matter
    b = load_model("Random", None).module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(LceError, match="takes no --weights"):
        load_model("random", Path("x.pth"))


@pytest.mark.slow
def test_wrong_format_is_a_clear_error(files: dict[str, Path]) -> None:
    with pytest.raises(LceError) as info:
        load_model("byol", files["moco_v2"])  # a torch file where a BYOL pickle is expected
    assert "cannot read as a pickle" in str(info.value) or "does not match" in str(info.value)
    with pytest.raises(LceError, match="missing keys"):
        load_model("swav", files["pycontrast"])  # prefixes of another format: nothing fits


def test_registry_names_and_aliases() -> None:
    names = [e.name for e in registry.REGISTRY]
    assert len(names) == 15 and len(set(names)) == 15
    assert registry.lookup("MoCo-v2") is registry.lookup("moco_v2") is registry.lookup("mocov2")
    assert registry.lookup("torchvision:resnet50") is None
    assert {e.normalize for e in registry.REGISTRY if e.name.startswith("simclr")} == {"none"}
    for entry in registry.REGISTRY:
        assert entry.format in registry.FORMATS
        assert all(r.url.startswith("https://") for r in entry.files)


def test_lce_models_lists_the_registry() -> None:
    code, out = lce("models")
    assert code == 0, out
    for entry in registry.REGISTRY:
        assert entry.name in out


def test_unknown_model_suggests_registry_names() -> None:
    with pytest.raises(LceError, match="mocov2"):
        load_model("mocov3", None)


@pytest.mark.slow
def test_registry_model_downloads_once_then_uses_the_cache(
    files: dict[str, Path],
    expected: torch.Tensor,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    range_server: RangeServer,
) -> None:
    server = range_server
    server.files["/moco_v2_800ep_pretrain.pth.tar"] = files["moco_v2"].read_bytes()
    entry = registry.lookup("mocov2")
    assert entry is not None
    local = dataclasses.replace(
        entry, files=(registry.Remote(f"{server.url}/moco_v2_800ep_pretrain.pth.tar"),)
    )
    monkeypatch.setattr(registry, "lookup", lambda spec: local if spec == "mocov2" else None)
    monkeypatch.setenv("LCE_CACHE", str(tmp_path / "cache"))
    for _ in range(2):
        loaded = load_model("mocov2", None)
        torch.testing.assert_close(cf.layer4(loaded.module, X), expected, rtol=0, atol=0)
    assert server.hits["/moco_v2_800ep_pretrain.pth.tar"] == 1
    cached = tmp_path / "cache" / "models" / "mocov2" / "moco_v2_800ep_pretrain.pth.tar"
    assert cached.is_file() and Path(f"{cached}.sha256").is_file()


def test_offline_error_names_the_address_and_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = registry.lookup("swav")
    assert entry is not None
    url = "http://127.0.0.1:9/swav_800ep_pretrain.pth.tar"  # discard port: refused
    local = dataclasses.replace(entry, files=(registry.Remote(url),))
    monkeypatch.setattr(registry, "lookup", lambda spec: local if spec == "swav" else None)
    monkeypatch.setenv("LCE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(LceError) as info:
        load_model("swav", None)
    message = str(info.value)
    assert url in message and "--weights" in message and "lce extract swav" in message


@pytest.mark.slow
def test_extract_registry_models_from_local_files(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`lce extract NAME --weights FILE` converts a local copy; models trained on different
    normalisations share one study, each run recording its own."""
    from tests.probe_factory import make_probe
    from warehouse.lake import read_table

    monkeypatch.setenv("LCE_CACHE", str(tmp_path / "cache"))
    probe = make_probe(tmp_path / "probe", n_images=3, size=32, label_size=8)
    lake = tmp_path / "lake"
    for name, fmt in (("mocov2", "moco_v2"), ("simclrv1", "simclr_zip")):
        code, out = lce(
            "extract", name, "--weights", files[fmt], "--layer", "layer4", "--layer", "layer3",
            "--probe", f"broden:{probe.root}", "--lake", lake, "--workers", "0",
            "--batch-size", "3", "--quantile", "0.05",
        )  # fmt: skip
        assert code == 0, out
    runs = {(r["model"], r["layer"]): r for r in read_table(lake, "runs").to_pylist()}
    assert runs[("mocov2", "layer4")]["normalize"] == "imagenet"
    assert runs[("simclrv1", "layer4")]["normalize"] == "none"
    assert runs[("mocov2", "layer4")]["n_units"] == 2048
    assert runs[("simclrv1", "layer3")]["layer_order"] == 1
    assert not (tmp_path / "cache").exists()  # nothing was downloaded
