"""The Parquet lake: contract schemas, partition layout, atomic replacement, dbt agreement."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import warehouse.lake
from base.errors import LceError
from warehouse.lake import SCHEMAS, ensure_writable, read_table, write_partition

SOURCES_YML = Path(__file__).resolve().parents[1] / "dbt_project/models/staging/_sources.yml"


def labels(models: list[str], units: list[int], concepts: list[str]) -> pa.Table:
    n = len(models)
    return pa.table(
        {
            "model": models,
            "layer": ["layer4"] * n,
            "unit": pa.array(units, pa.int32()),
            "concept": concepts,
            "category": ["object"] * n,
            "iou": [0.25 * (i + 1) for i in range(n)],
        }
    )


def parquet_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.parquet"))


def test_write_partition_layout_schema_and_rows(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    # Columns out of order, one extra column, integer columns as int64 and the bool as int:
    # the file must hold exactly the contract's columns, in order, with the contract's types.
    data = pa.table(
        {
            "higher_is_better": [True, False],
            "extra": ["dropped", "dropped"],
            "value": [71.5, 12.25],
            "metric": ["top-1 accuracy", "mean angular error"],
            "dataset": ["ImageNet", "NYUv2"],
            "task": ["many_shot_linear", "surface_normals"],
            "model": ["ResNet50", "ResNet50"],
        }
    )
    final = write_partition(lake, "task_benchmarks", {"source": "mine"}, data)

    assert final == lake / "task_benchmarks" / "source=mine"
    files = parquet_files(lake / "task_benchmarks")
    assert [f.parent for f in files] == [final]

    schema = pq.read_schema(files[0])
    expected_fields = [
        ("model", pa.string()),
        ("task", pa.string()),
        ("dataset", pa.string()),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("higher_is_better", pa.bool_()),
    ]
    assert [(f.name, f.type) for f in schema] == expected_fields

    back = pq.read_table(files[0]).to_pylist()
    assert back == [
        {
            "model": "ResNet50",
            "task": "many_shot_linear",
            "dataset": "ImageNet",
            "metric": "top-1 accuracy",
            "value": 71.5,
            "higher_is_better": True,
        },
        {
            "model": "ResNet50",
            "task": "surface_normals",
            "dataset": "NYUv2",
            "metric": "mean angular error",
            "value": 12.25,
            "higher_is_better": False,
        },
    ]


def test_write_partition_casts_to_contract_types(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    data = pa.table(
        {
            "model": ["m", "m"],
            "layer": ["layer4", "layer4"],
            "unit": pa.array([0, 7], pa.int64()),  # contract: int32
            "threshold": pa.array([1, 2], pa.int64()),  # contract: float64
            "act_max": [3.5, 4.5],
            "act_mean": [0.5, 0.75],
        }
    )
    final = write_partition(lake, "unit_thresholds", {"model": "m", "layer": "layer4"}, data)
    assert final == lake / "unit_thresholds" / "model=m" / "layer=layer4"
    table = pq.read_table(parquet_files(final)[0])
    assert table.schema.field("unit").type == pa.int32()
    assert table.schema.field("threshold").type == pa.float64()
    assert table.column("unit").to_pylist() == [0, 7]
    assert table.column("threshold").to_pylist() == [1.0, 2.0]


def test_rewrite_replaces_partition_and_leaves_others(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    write_partition(
        lake, "unit_labels", {"source": "a"}, labels(["A", "A"], [0, 1], ["sky", "dog"])
    )
    write_partition(lake, "unit_labels", {"source": "b"}, labels(["B"], [5], ["cat"]))
    before_b = (lake / "unit_labels" / "source=b" / "part-0.parquet").read_bytes()

    write_partition(lake, "unit_labels", {"source": "a"}, labels(["A2"], [3], ["tree"]))

    rows = sorted(
        (r["model"], r["unit"], r["concept"]) for r in read_table(lake, "unit_labels").to_pylist()
    )
    assert rows == [("A2", 3, "tree"), ("B", 5, "cat")]
    # one file per partition, the other partition byte-for-byte untouched
    assert len(parquet_files(lake / "unit_labels" / "source=a")) == 1
    assert (lake / "unit_labels" / "source=b" / "part-0.parquet").read_bytes() == before_b
    assert sorted(p.name for p in (lake / "unit_labels").iterdir()) == ["source=a", "source=b"]
    # the replaced partition's old copy is not left behind in the staging folder
    assert list((lake / ".tmp").iterdir()) == []


def test_model_names_are_percent_encoded_into_one_folder(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    name = "facebook/dino v2 (R)"
    data = pa.table(
        {
            "model": [name],
            "layer": ["layer4.2"],
            "unit": pa.array([0], pa.int32()),
            "threshold": [0.5],
            "act_max": [1.0],
            "act_mean": [0.1],
        }
    )
    final = write_partition(lake, "unit_thresholds", {"model": name, "layer": "layer4.2"}, data)

    root = lake / "unit_thresholds"
    # '/' -> %2F, ' ' -> %20, '(' -> %28, ')' -> %29: one folder level for the model
    assert [p.name for p in root.iterdir()] == ["model=facebook%2Fdino%20v2%20%28R%29"]
    model_dir = root / "model=facebook%2Fdino%20v2%20%28R%29"
    assert [p.name for p in model_dir.iterdir()] == ["layer=layer4.2"]
    assert final == model_dir / "layer=layer4.2"
    assert [f.relative_to(root).parts for f in parquet_files(root)] == [
        ("model=facebook%2Fdino%20v2%20%28R%29", "layer=layer4.2", "part-0.parquet")
    ]

    table = read_table(lake, "unit_thresholds")
    assert table.column("model").to_pylist() == [name]
    assert table.column("layer").to_pylist() == ["layer4.2"]


def test_missing_column_is_a_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    data = labels(["A"], [0], ["sky"]).drop_columns(["category"])
    with pytest.raises(LceError) as info:
        write_partition(lake, "unit_labels", {"source": "a"}, data)
    message = str(info.value)
    assert "unit_labels" in message
    assert "category" in message
    assert not (lake / "unit_labels").exists()
    assert parquet_files(tmp_path) == []


def test_read_table_of_absent_table_is_empty_with_contract_schema(tmp_path: Path) -> None:
    table = read_table(tmp_path / "lake", "model_exclusions")
    assert table.num_rows == 0
    assert table.schema.names == ["model", "reason"]


def test_failed_write_keeps_previous_partition_and_no_temp_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = tmp_path / "lake"
    write_partition(
        lake, "unit_labels", {"source": "a"}, labels(["A", "A"], [0, 1], ["sky", "dog"])
    )
    final = lake / "unit_labels" / "source=a"
    before = (final / "part-0.parquet").read_bytes()

    def broken_write(table: pa.Table, where: object, *args: object, **kwargs: object) -> None:
        Path(str(where)).write_bytes(b"PAR1 half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(warehouse.lake.pq, "write_table", broken_write)
    with pytest.raises((OSError, LceError)):
        write_partition(lake, "unit_labels", {"source": "a"}, labels(["NEW"], [9], ["cat"]))
    # a fresh partition that fails is not created at all
    with pytest.raises((OSError, LceError)):
        write_partition(lake, "unit_labels", {"source": "b"}, labels(["NEW"], [9], ["cat"]))
    monkeypatch.undo()

    assert [p.name for p in final.iterdir()] == ["part-0.parquet"]
    assert (final / "part-0.parquet").read_bytes() == before
    assert not (lake / "unit_labels" / "source=b").exists()
    rows = sorted((r["model"], r["unit"]) for r in read_table(lake, "unit_labels").to_pylist())
    assert rows == [("A", 0), ("A", 1)]
    tmp = lake / ".tmp"
    leftovers = list(tmp.iterdir()) if tmp.exists() else []
    assert leftovers == []


def test_ensure_writable_read_only_folder(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    lake.mkdir()
    lake.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        if os.access(lake, os.W_OK):
            pytest.skip("chmod does not stop this user (root) from writing")
        with pytest.raises(LceError) as info:
            ensure_writable(lake)
        assert str(lake) in str(info.value)
        with pytest.raises(LceError):
            write_partition(lake, "unit_labels", {"source": "a"}, labels(["A"], [0], ["sky"]))
    finally:
        lake.chmod(stat.S_IRWXU)
    assert list(lake.iterdir()) == []


def test_ensure_writable_lake_path_is_a_file(tmp_path: Path) -> None:
    # Works for root too: nothing can be created below a regular file.
    lake = tmp_path / "lake"
    lake.write_text("not a folder")
    with pytest.raises(LceError) as info:
        ensure_writable(lake)
    assert str(lake) in str(info.value)
    assert lake.read_text() == "not a folder"


ARROW_TO_DUCKDB = {
    pa.string(): "varchar",
    pa.int32(): "integer",
    pa.int64(): "bigint",
    pa.float64(): "double",
    pa.bool_(): "boolean",
    pa.list_(pa.float32()): "float[]",
    pa.binary(): "blob",
}


def duckdb_type(dtype: pa.DataType) -> str:
    if pa.types.is_timestamp(dtype) and dtype.tz is not None:
        return "timestamp with time zone"
    return ARROW_TO_DUCKDB[dtype]


def test_schemas_agree_with_dbt_sources() -> None:
    sources = yaml.safe_load(SOURCES_YML.read_text())["sources"]
    lake_source = next(s for s in sources if s["name"] == "lake")
    dbt_tables = {
        t["name"]: [(c["name"], c["data_type"].lower()) for c in t["columns"]]
        for t in lake_source["tables"]
    }
    assert sorted(dbt_tables) == sorted(SCHEMAS)
    for table, schema in SCHEMAS.items():
        arrow = [(f.name, duckdb_type(f.type)) for f in schema]
        assert arrow == dbt_tables[table], table


def test_timestamp_column_maps_to_timestamptz() -> None:
    # The one non-trivial mapping, checked by hand so the helper above cannot hide a mismatch.
    assert duckdb_type(SCHEMAS["runs"].field("started_at").type) == "timestamp with time zone"


def test_each_commit_names_the_lake_state(tmp_path: Path) -> None:
    """lake/.last-commit holds the id of the last applied commit (dim_study.lake_commit): a new
    id per commit, and the id of the commit folder that made it."""
    lake = tmp_path / "lake"
    assert warehouse.lake.last_commit(lake) is None
    ids = []
    for value in ("a", "b"):
        write_partition(lake, "unit_labels", {"source": value}, labels(["m"], [0], [value]))
        text = (lake / ".last-commit").read_text()
        assert text.endswith("\n") and len(text.strip()) == 32
        int(text, 16)  # a uuid4 in hex, the commit folder's name
        ids.append(warehouse.lake.last_commit(lake))
    assert ids[0] != ids[1]
    assert not list(lake.glob(".last-commit.pending"))


def test_a_runs_file_written_before_weights_sha256_reads_it_as_null(tmp_path: Path) -> None:
    """An older lake's runs (no weights_sha256 column) still read, the column null; every other
    column stays required."""
    lake = tmp_path / "lake"
    folder = lake / "runs" / "model=m" / "layer=l"
    folder.mkdir(parents=True)
    older = SCHEMAS["runs"].remove(SCHEMAS["runs"].get_field_index("weights_sha256"))
    values = {"string": "x", "int32": 0, "int64": 0, "double": 0.5, "bool": False}
    row = {
        name: [values.get(str(field.type))] for name, field in zip(older.names, older, strict=True)
    }
    pq.write_table(pa.table(row, schema=older), folder / "part-0.parquet")
    runs = read_table(lake, "runs")
    assert runs.schema == SCHEMAS["runs"]
    assert runs.column("weights_sha256").to_pylist() == [None]
    assert runs.column("model").to_pylist() == ["x"]
    with pytest.raises(LceError, match="missing column"):
        warehouse.lake.conform("runs", pa.table(row, schema=older).drop_columns(["device"]))
