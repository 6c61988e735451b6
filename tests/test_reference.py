"""The paper's published data: conversion, sha256 checks, downloads and `lce reference load`."""

from __future__ import annotations

import csv
import hashlib
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from base.download import cache_dir, download
from base.errors import LceError
from lce.cli import app
from tests.conftest import EXCLUDED, REFERENCE, REPO
from tests.http_fixture import RangeServer, serve
from warehouse import reference
from warehouse.lake import read_table

SHARED = REFERENCE  # ../shared/reference/paper-2022, or $LCE_REFERENCE_DIR
PROFILES = "models_dissect_profiles_raw.csv"
TASKS = "models_performance_on_tasks.csv"
needs_shared = pytest.mark.skipif(
    not (SHARED / PROFILES).is_file() or not (SHARED / TASKS).is_file(),
    reason=f"published reference files not found in {SHARED} (set LCE_REFERENCE_DIR)",
)


def stderr_of(result) -> str:
    try:
        return result.stderr
    except ValueError:  # older click without a separate stderr
        return result.output


# --------------------------------------------------------------------------- conversion


PROFILES_CSV = """,name,unit,iou,label,category
0,MoCoV2(R),0,0.11151256412267685,ceiling-b,part
1,MoCoV2(R),1,0.017,-,object
2,BYOL(R),0,0.5,red-c,color
3,BYOL(R),2047,0.0625,wood,material
"""

TASKS_HEADER = (
    ",Unnamed: 0_x_x,model,dt_ImageNet,voc_forzen_ap,voc_tuned_ap_50,ISIC_5_shot,sne_Mean,sne_11.25"
)
TASKS_CSV = f"""{TASKS_HEADER}
0,0,InsDis(R),59.5,48.75,80.25,41.5,21.5,26.75
1,1,BYOL(R),74.25,,82.5,39.0,18.25,32.125
"""


def test_convert_profiles(tmp_path: Path) -> None:
    path = tmp_path / PROFILES
    path.write_text(PROFILES_CSV)
    frame = reference.convert_profiles(path)
    assert frame.columns == ["model", "layer", "unit", "concept", "category", "iou"]
    assert sorted(frame.iter_rows()) == [
        ("BYOL(R)", "layer4", 0, "red-c", "color", 0.5),
        ("BYOL(R)", "layer4", 2047, "wood", "material", 0.0625),
        ("MoCoV2(R)", "layer4", 0, "ceiling-b", "part", 0.11151256412267685),
        ("MoCoV2(R)", "layer4", 1, "-", "object", 0.017),
    ]


def test_task_column_families() -> None:
    assert reference.task_column("dt_ImageNet")[:2] == ("many_shot_linear", "ImageNet")
    assert reference.task_column("voc_forzen_ap")[0] == "detection_frozen"
    assert reference.task_column("voc_tuned_ap_50")[0] == "detection_finetuned"
    assert reference.task_column("voc_tuned_ap_50")[2] == "AP50"
    assert reference.task_column("ISIC_5_shot")[:2] == ("few_shot", "ISIC")
    assert reference.task_column("ChestX_50_shot")[:2] == ("few_shot", "ChestX")
    assert "5" in reference.task_column("ISIC_5_shot")[2]
    assert "50" in reference.task_column("ChestX_50_shot")[2]
    # Angular errors: lower is better; share of pixels within an angle: higher is better.
    assert reference.task_column("sne_Mean")[0] == "surface_normals"
    assert reference.task_column("sne_Mean")[3] is False
    assert reference.task_column("sne_Median")[3] is False
    assert reference.task_column("sne_11.25")[3] is True
    assert reference.task_column("sne_30")[3] is True
    with pytest.raises(LceError, match="mystery_column"):
        reference.task_column("mystery_column")


def test_convert_tasks(tmp_path: Path) -> None:
    path = tmp_path / TASKS
    path.write_text(TASKS_CSV)
    frame = reference.convert_tasks(path)
    assert frame.columns == ["model", "task", "dataset", "metric", "value", "higher_is_better"]
    assert not any("Unnamed" in v for v in frame["task"].to_list() + frame["dataset"].to_list())

    rows = {(r[0], r[1], r[2]): (r[4], r[5]) for r in frame.iter_rows()}
    by_family = Counter(frame["task"].to_list())
    # 2 models x 6 task columns, less BYOL's empty voc_forzen_ap cell
    assert frame.height == 11
    assert by_family == {
        "many_shot_linear": 2,
        "detection_frozen": 1,
        "detection_finetuned": 2,
        "few_shot": 2,
        "surface_normals": 4,
    }
    assert rows[("InsDis(R)", "many_shot_linear", "ImageNet")] == (59.5, True)
    assert rows[("BYOL(R)", "many_shot_linear", "ImageNet")] == (74.25, True)
    assert rows[("InsDis(R)", "detection_frozen", "VOC07+12")] == (48.75, True)
    assert rows[("BYOL(R)", "detection_finetuned", "VOC07+12")] == (82.5, True)
    assert rows[("InsDis(R)", "few_shot", "ISIC")] == (41.5, True)
    assert rows[("BYOL(R)", "few_shot", "ISIC")] == (39.0, True)

    normals = {
        (r["model"], r["value"]): r["higher_is_better"]
        for r in frame.filter(frame["task"] == "surface_normals").iter_rows(named=True)
    }
    # sne_Mean (21.5, 18.25) lower is better; sne_11.25 (26.75, 32.125) higher is better
    assert normals == {
        ("InsDis(R)", 21.5): False,
        ("BYOL(R)", 18.25): False,
        ("InsDis(R)", 26.75): True,
        ("BYOL(R)", 32.125): True,
    }
    assert {r["dataset"] for r in frame.filter(frame["task"] == "surface_normals").to_dicts()} == {
        "NYUv2"
    }


def test_load_rejects_wrong_sha256_via_cli(tmp_path: Path) -> None:
    folder = tmp_path / "ref"
    folder.mkdir()
    (folder / PROFILES).write_text(PROFILES_CSV)
    (folder / TASKS).write_text(TASKS_CSV)
    with pytest.raises(LceError) as info:
        reference.load(folder)
    assert PROFILES in str(info.value) and "sha256" in str(info.value)

    lake = tmp_path / "lake"
    result = CliRunner().invoke(
        app, ["reference", "load", "--from", str(folder), "--lake", str(lake)]
    )
    assert result.exit_code != 0
    err = stderr_of(result)
    assert PROFILES in err and "sha256" in err
    assert not (lake / "unit_labels").exists()
    assert not lake.exists() or not any(lake.rglob("*.parquet"))


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LceError) as info:
        reference.load(tmp_path)
    assert PROFILES in str(info.value)


@needs_shared
def test_load_rejects_one_tampered_file(tmp_path: Path) -> None:
    folder = tmp_path / "ref"
    folder.mkdir()
    shutil.copy(SHARED / PROFILES, folder / PROFILES)
    data = (SHARED / TASKS).read_bytes()
    (folder / TASKS).write_bytes(data.replace(b"59.5", b"59.6", 1))
    lake = tmp_path / "lake"
    result = CliRunner().invoke(
        app, ["reference", "load", "--from", str(folder), "--lake", str(lake)]
    )
    assert result.exit_code != 0
    err = stderr_of(result)
    assert TASKS in err and "sha256" in err
    assert not lake.exists() or not any(lake.rglob("*.parquet"))


def assert_reference_lake(lake: Path) -> None:
    labels = read_table(lake, "unit_labels").to_pydict()
    per_model = Counter(labels["model"])
    assert len(per_model) == 20
    assert set(per_model.values()) == {2048}
    assert set(labels["layer"]) == {"layer4"}
    for model in per_model:
        units = sorted(
            u for m, u in zip(labels["model"], labels["unit"], strict=True) if m == model
        )
        assert units == list(range(2048))
    assert "-" in set(labels["concept"])

    tasks = read_table(lake, "task_benchmarks").to_pydict()
    assert len(tasks["model"]) == 14 * 36 == 504
    assert len(set(tasks["model"])) == 14
    assert not any("Unnamed" in s for s in tasks["task"] + tasks["dataset"] + tasks["metric"])
    keys = zip(tasks["model"], tasks["task"], tasks["dataset"], tasks["metric"], strict=True)
    assert len(set(keys)) == 504

    exclusions = read_table(lake, "model_exclusions").to_pydict()
    assert len(exclusions["model"]) == 7
    assert set(exclusions["model"]) == EXCLUDED
    assert all(reason for reason in exclusions["reason"])


@needs_shared
def test_reference_load_from_shared_folder(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    result = CliRunner().invoke(
        app, ["reference", "load", "--from", str(SHARED), "--lake", str(lake)]
    )
    assert result.exit_code == 0, result.output
    assert_reference_lake(lake)
    # the published values are carried exactly (first data row of the task table)
    tasks = read_table(lake, "task_benchmarks").to_pylist()
    insdis_imagenet = [
        r["value"]
        for r in tasks
        if r["model"] == "InsDis(R)"
        and r["task"] == "many_shot_linear"
        and r["dataset"] == "ImageNet"
    ]
    assert insdis_imagenet == [59.5]


# --------------------------------------------------------------------------- downloads


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[RangeServer]:
    yield from serve(monkeypatch)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_good_file_once(server: RangeServer, tmp_path: Path) -> None:
    data = b"published bytes\n" * 1000
    server.files["/data/a.csv"] = data
    dest = tmp_path / "cache" / "a.csv"

    assert download(f"{server.url}/data/a.csv", dest, sha(data)) == dest
    assert dest.read_bytes() == data
    assert not dest.with_name("a.csv.partial").exists()
    assert server.hits["/data/a.csv"] == 1

    assert download(f"{server.url}/data/a.csv", dest, sha(data)) == dest
    assert server.hits["/data/a.csv"] == 1
    assert dest.read_bytes() == data


def test_download_sha256_mismatch(server: RangeServer, tmp_path: Path) -> None:
    data = b"the real bytes"
    server.files["/a.csv"] = data
    dest = tmp_path / "a.csv"
    with pytest.raises(LceError) as info:
        download(f"{server.url}/a.csv", dest, sha(b"other bytes"))
    assert "sha256" in str(info.value)
    assert not dest.exists()
    assert not dest.with_name("a.csv.partial").exists()
    assert list(tmp_path.iterdir()) == []


def test_download_broken_off_then_good(server: RangeServer, tmp_path: Path) -> None:
    data = bytes(range(256)) * 400  # 102400 bytes
    server.files["/big.bin"] = data
    server.truncate["/big.bin"] = 5000
    dest = tmp_path / "big.bin"
    with pytest.raises(LceError):
        download(f"{server.url}/big.bin", dest, sha(data))
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []

    del server.truncate["/big.bin"]
    assert download(f"{server.url}/big.bin", dest, sha(data)) == dest
    assert dest.read_bytes() == data
    assert server.hits["/big.bin"] == 2


def test_download_http_error(server: RangeServer, tmp_path: Path) -> None:
    dest = tmp_path / "nothing.csv"
    with pytest.raises(LceError) as info:
        download(f"{server.url}/nothing.csv", dest, sha(b""))
    assert "nothing.csv" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_download_replaces_corrupt_cached_copy(server: RangeServer, tmp_path: Path) -> None:
    data = b"good"
    server.files["/f"] = data
    dest = tmp_path / "f"
    dest.write_bytes(b"stale")
    assert download(f"{server.url}/f", dest, sha(data)) == dest
    assert dest.read_bytes() == data
    assert server.hits["/f"] == 1


@needs_shared
def test_reference_load_downloads(
    server: RangeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (PROFILES, TASKS):
        server.files[f"/pinned/Data/{name}"] = (SHARED / name).read_bytes()
    cache = tmp_path / "cache"
    monkeypatch.setenv("LCE_REFERENCE_URL", f"{server.url}/pinned/Data/")
    monkeypatch.setenv("LCE_CACHE", str(cache))
    lake = tmp_path / "lake"

    result = CliRunner().invoke(app, ["reference", "load", "--lake", str(lake)])
    assert result.exit_code == 0, result.output
    assert server.hits == {f"/pinned/Data/{PROFILES}": 1, f"/pinned/Data/{TASKS}": 1}
    assert_reference_lake(lake)


@needs_shared
def test_reference_load_truncated_download(
    server: RangeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.files[f"/{PROFILES}"] = (SHARED / PROFILES).read_bytes()
    # a truncated copy that the server serves as a complete, shorter file
    server.files[f"/{TASKS}"] = (SHARED / TASKS).read_bytes()[:1000]
    cache = tmp_path / "cache"
    monkeypatch.setenv("LCE_REFERENCE_URL", server.url)
    monkeypatch.setenv("LCE_CACHE", str(cache))
    lake = tmp_path / "lake"

    result = CliRunner().invoke(app, ["reference", "load", "--lake", str(lake)])
    assert result.exit_code != 0
    err = stderr_of(result).strip()
    assert "Traceback" not in result.output
    assert "\n" not in err, err
    assert TASKS in err and "sha256" in err
    assert not lake.exists() or not any(lake.rglob("*.parquet"))
    # nothing that could pass for the published file is left in the cache
    assert not any(p.name == TASKS for p in cache.rglob("*"))
    assert not any(p.name.endswith(".partial") for p in cache.rglob("*"))


@needs_shared
def test_reference_load_downloads_into_the_shared_cache_folder(
    server: RangeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without LCE_CACHE the published files land under $XDG_CACHE_HOME/lce, the folder the
    model checkpoints use too (base.download.cache_dir)."""
    for name in (PROFILES, TASKS):
        server.files[f"/pinned/Data/{name}"] = (SHARED / name).read_bytes()
    monkeypatch.setenv("LCE_REFERENCE_URL", f"{server.url}/pinned/Data/")
    monkeypatch.delenv("LCE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = tmp_path / "xdg" / "lce" / "reference" / reference.SOURCE
    assert cache_dir() / "reference" / reference.SOURCE == folder

    result = CliRunner().invoke(app, ["reference", "load", "--lake", str(tmp_path / "lake")])
    assert result.exit_code == 0, result.output
    assert f"downloading the published files to {folder}" in result.output
    for name in (PROFILES, TASKS):
        assert (folder / name).read_bytes() == (SHARED / name).read_bytes()


needs_reference_profiles = pytest.mark.skipif(
    not (REFERENCE / "models_dissect_profiles_raw.csv").is_file(),
    reason="the paper's published data is not here",
)


@needs_reference_profiles
def test_readme_counts_the_rows_without_iou_per_model_as_the_paper_has_them() -> None:
    with (REFERENCE / "models_dissect_profiles_raw.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    missing = Counter(r["name"] for r in rows if r["iou"].strip().lower() in ("", "nan"))
    assert missing == {"Random(R)": 368, "SimCLRV2(R)": 29}
    readme = (REPO / "README.md").read_text() + (REPO / "docs" / "guide.md").read_text()
    assert "397 SimCLR-v2 rows have no IoU" not in readme
    assert "368 are the random model's and 29 SimCLR-v2's" in readme
