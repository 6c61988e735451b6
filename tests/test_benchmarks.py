"""`lce benchmarks add`: long-format task results validated, then written as one lake source."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from lce.cli import app
from warehouse.lake import read_table, write_partition

HEADER = "model,task,dataset,metric,value,higher_is_better"

GOOD_CSV = f"""{HEADER}
ResNet50,many_shot_linear,ImageNet,top-1 accuracy,71.55,true
ResNet50,surface_normals,NYUv2,mean angular error,-3,false
BYOL(R),few_shot,ISIC,5-shot accuracy,1e-3,TRUE
BYOL(R),many_shot_linear,ImageNet,top-1 accuracy,0.1,False
"""
GOOD_CSV_ROWS = [
    ("BYOL(R)", "few_shot", "ISIC", "5-shot accuracy", 0.001, True),
    ("BYOL(R)", "many_shot_linear", "ImageNet", "top-1 accuracy", 0.1, False),
    ("ResNet50", "many_shot_linear", "ImageNet", "top-1 accuracy", 71.55, True),
    ("ResNet50", "surface_normals", "NYUv2", "mean angular error", -3.0, False),
]


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def stderr_of(result) -> str:
    try:
        return result.stderr
    except ValueError:  # older click without a separate stderr
        return result.output


def lake_rows(lake: Path) -> list[tuple]:
    table = read_table(lake, "task_benchmarks")
    return sorted(
        (r["model"], r["task"], r["dataset"], r["metric"], r["value"], r["higher_is_better"])
        for r in table.to_pylist()
    )


def source_folders(lake: Path) -> list[str]:
    return sorted(p.name for p in (lake / "task_benchmarks").iterdir())


def test_add_csv_default_source_is_stem(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    path = tmp_path / "ericsson.csv"
    path.write_text(GOOD_CSV)
    result = run("benchmarks", "add", str(path), "--lake", str(lake))
    assert result.exit_code == 0, result.output
    assert lake_rows(lake) == GOOD_CSV_ROWS
    assert source_folders(lake) == ["source=ericsson"]


def test_add_parquet_with_source_option(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    path = tmp_path / "results.parquet"
    pq.write_table(
        pa.table(
            {
                "model": ["SwAV(R)", "SwAV(R)", "InsDis(R)"],
                "task": ["detection_frozen", "surface_normals", "detection_frozen"],
                "dataset": ["VOC07+12", "NYUv2", "VOC07+12"],
                "metric": ["AP50", "median angular error", "AP50"],
                "value": [82.25, 14.125, 0.3],
                "higher_is_better": [True, False, True],
            }
        ),
        path,
    )
    result = run("benchmarks", "add", str(path), "--source", "my-lab", "--lake", str(lake))
    assert result.exit_code == 0, result.output
    assert lake_rows(lake) == [
        ("InsDis(R)", "detection_frozen", "VOC07+12", "AP50", 0.3, True),
        ("SwAV(R)", "detection_frozen", "VOC07+12", "AP50", 82.25, True),
        ("SwAV(R)", "surface_normals", "NYUv2", "median angular error", 14.125, False),
    ]
    assert source_folders(lake) == ["source=my-lab"]


def test_readding_a_source_replaces_it_and_keeps_others(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    first = tmp_path / "first.csv"
    first.write_text(GOOD_CSV)
    other = tmp_path / "other.csv"
    other.write_text(f"{HEADER}\nX,few_shot,EuroSAT,5-shot accuracy,50,true\n")
    second = tmp_path / "second.csv"
    second.write_text(f"{HEADER}\nNEW,few_shot,ChestX,20-shot accuracy,33.5,true\n")

    assert run("benchmarks", "add", str(first), "--lake", str(lake)).exit_code == 0
    assert run("benchmarks", "add", str(other), "--lake", str(lake)).exit_code == 0
    result = run("benchmarks", "add", str(second), "--source", "first", "--lake", str(lake))
    assert result.exit_code == 0, result.output

    assert source_folders(lake) == ["source=first", "source=other"]
    assert lake_rows(lake) == [
        ("NEW", "few_shot", "ChestX", "20-shot accuracy", 33.5, True),
        ("X", "few_shot", "EuroSAT", "5-shot accuracy", 50.0, True),
    ]


def assert_clean_failure(result, lake: Path, *needles: str) -> str:
    assert result.exit_code != 0
    err = stderr_of(result).strip()
    assert err, result.output
    assert "\n" not in err, err
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in err, (needle, err)
    assert not (lake / "task_benchmarks").exists()
    return err


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        pytest.param(
            f"{HEADER}\nA,t,d,acc,1.0,true\nB,t,d,acc,n/a,true\n",
            ["value", "'n/a'", "row 3"],
            id="non-numeric-value",
        ),
        pytest.param(
            f"{HEADER}\nA,t,d,acc,1.0,true\nA,t,e,acc,2.0,true\nA,t,d,acc,3.0,true\n",
            ["duplicate", "A, t, d, acc"],
            id="duplicate-key",
        ),
        pytest.param(
            f"{HEADER}\nA,t,d,acc,1.0,true\nB,t,d,acc,2.0,maybe\n",
            ["higher_is_better", "maybe"],
            id="bad-flag",
        ),
        pytest.param(
            f"{HEADER}\nA,t,d,acc,1.0,true\nB,,d,acc,2.0,true\n",
            ["task", "row 3"],
            id="empty-key-field",
        ),
        pytest.param(
            f"{HEADER}\nA,t,d,acc,inf,true\n",
            ["value", "inf"],
            id="infinite-value",
        ),
        pytest.param(
            f"{HEADER}\nA,t,d,acc,[missing],true\n",
            ["value", "'[missing]'", "row 2"],
            id="bracketed-text",
        ),
        pytest.param(
            f"{HEADER}\nA,t,d,acc,[/b],true\n",
            ["value", "'[/b]'", "row 2"],
            id="closing-tag-text",
        ),
        pytest.param(
            f"{HEADER}\nA,t,d,acc,0e-400,true\nB,t,d,acc,1e-400,true\n",
            ["value", "'1e-400'", "row 3", "too small"],
            id="underflow-to-zero",
        ),
        pytest.param(
            f"{HEADER}\nA,t,d,acc,-2.5e-310,true\n",
            ["value", "row 2", "too small"],
            id="subnormal",
        ),
        pytest.param(
            f'{HEADER}\nA,t,d,acc,1,true\n"esc\x1b[2J\x1b]0;PWNED\x07",t,d,acc,2,true\n',
            ["row 3", "'model'", "control character"],
            id="control-character-in-model",
        ),
        pytest.param(
            f'{HEADER}\nA,"two\nlines",d,acc,2,true\n',
            ["row 2", "'task'", "control character"],
            id="newline-in-task",
        ),
    ],
)
def test_bad_csv_is_rejected_and_nothing_written(
    tmp_path: Path, body: str, needles: list[str]
) -> None:
    lake = tmp_path / "lake"
    path = tmp_path / "bad.csv"
    path.write_text(body)
    result = run("benchmarks", "add", str(path), "--lake", str(lake))
    assert_clean_failure(result, lake, str(path), *needles)
    assert not lake.exists() or not any(lake.rglob("*.parquet"))


def test_missing_column_is_named(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    path = tmp_path / "bad.csv"
    path.write_text("model,task,dataset,value,higher_is_better\nA,t,d,1.0,true\n")
    result = run("benchmarks", "add", str(path), "--lake", str(lake))
    err = assert_clean_failure(result, lake, str(path), "missing", "metric")
    # The message may go on to list the expected columns; the part naming what is missing must
    # name 'metric' and none of the columns that are present.
    missing_part = err.replace(str(path), "").split("missing", 1)[1].split("expected", 1)[0]
    assert "metric" in missing_part
    for present in ("model", "task", "dataset", "value", "higher_is_better"):
        assert present not in missing_part


def test_bad_parquet_value_names_row(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    path = tmp_path / "bad.parquet"
    pq.write_table(
        pa.table(
            {
                "model": ["A", "B"],
                "task": ["t", "t"],
                "dataset": ["d", "d"],
                "metric": ["acc", "acc"],
                "value": ["1.5", "abc"],
                "higher_is_better": [True, True],
            }
        ),
        path,
    )
    result = run("benchmarks", "add", str(path), "--lake", str(lake))
    # Parquet has no header line: the second record is row 2.
    assert_clean_failure(result, lake, str(path), "value", "'abc'", "row 2")


def test_bad_input_leaves_existing_source_untouched(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    good = tmp_path / "same.csv"
    good.write_text(GOOD_CSV)
    assert run("benchmarks", "add", str(good), "--lake", str(lake)).exit_code == 0
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{HEADER}\nA,t,d,acc,oops,true\n")
    result = run("benchmarks", "add", str(bad), "--source", "same", "--lake", str(lake))
    assert result.exit_code != 0
    assert lake_rows(lake) == GOOD_CSV_ROWS


def test_missing_file(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    path = tmp_path / "nowhere.csv"
    result = run("benchmarks", "add", str(path), "--lake", str(lake))
    assert_clean_failure(result, lake, str(path))
    assert not lake.exists()


@pytest.mark.parametrize("suffix", [".txt", ".json"])
def test_wrong_extension(tmp_path: Path, suffix: str) -> None:
    lake = tmp_path / "lake"
    path = tmp_path / f"results{suffix}"
    # Content that would be valid as CSV: only the extension is wrong.
    path.write_text(GOOD_CSV)
    result = run("benchmarks", "add", str(path), "--lake", str(lake))
    err = assert_clean_failure(result, lake, str(path))
    assert ".csv" in err and ".parquet" in err
    assert not lake.exists()


def test_corrupt_parquet(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"this is not parquet at all")
    result = run("benchmarks", "add", str(path), "--lake", str(lake))
    assert_clean_failure(result, lake, str(path), "parquet")


@pytest.mark.parametrize("source", ["../escape", ".hidden"])
def test_bad_source_name(tmp_path: Path, source: str) -> None:
    lake = tmp_path / "lake"
    path = tmp_path / "ok.csv"
    path.write_text(GOOD_CSV)
    result = run("benchmarks", "add", str(path), "--source", source, "--lake", str(lake))
    assert_clean_failure(result, lake, source)
    assert not (tmp_path / "escape").exists()


def test_a_model_the_lake_does_not_know_is_warned_with_the_closest_name(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    path = tmp_path / "ericsson.csv"
    path.write_text(GOOD_CSV)
    empty = run("benchmarks", "add", str(path), "--lake", str(lake))
    assert empty.exit_code == 0 and "warning" not in stderr_of(empty)  # nothing known yet
    labels = pa.table(
        {"model": ["ResNet50", "BYOL", "MoCo-v2"], "layer": ["layer4"] * 3, "unit": [0, 0, 0],
         "concept": ["sky"] * 3, "category": ["object"] * 3, "iou": [0.1] * 3}
    )  # fmt: skip
    write_partition(lake, "unit_labels", {"source": "mine"}, labels)
    result = run("benchmarks", "add", str(path), "--lake", str(lake))
    assert result.exit_code == 0, result.output
    warnings = [x for x in stderr_of(result).splitlines() if x.startswith("warning:")]
    assert warnings == [
        "warning: model 'BYOL(R)' is not in the lake (no dissection or unit labels); the "
        "closest known model is 'BYOL'"
    ]
    assert lake_rows(lake) == GOOD_CSV_ROWS  # a warning, not a refusal
