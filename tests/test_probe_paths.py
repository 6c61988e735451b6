"""Files a probe set (or a COCO file) names must stay inside its folder and be plain files.

The names in index.csv and a COCO ``file_name`` are data: ``../..``, an absolute path or a link
pointing out of the folder would be read silently, and a FIFO would block the reader forever.
`lce probe info`, `lce probe from` and `lce extract` refuse them in one line naming the file and
the row, through the same check as the explorer (base.named_files). The real command line runs
in-process, and in a subprocess with a timeout where the old code would block.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_helpers import assert_clean_failure, cli_env, extract
from tests.coco_fixture import write_coco
from tests.conftest import lce
from tests.probe_factory import make_probe

# index.csv's third line: the second image (img001), whose object map is img001_object_0.png
LINE, IMAGE, LABEL = 3, "img001.png", "img001_object_0.png"


# The fixtures of tests/test_extract_errors.py, on a smaller probe set (fixtures imported from
# another test module would be shadowed by the parameters that name them).
@pytest.fixture(autouse=True)
def _importable_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_probe(tmp_path_factory.mktemp("probe") / "broden", n_images=4).root


@pytest.fixture
def probe(pristine: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "broden"
    shutil.copytree(pristine, dst)
    return dst


def set_cell(probe: Path, line: int, column: str, value: str) -> None:
    """Rewrite one cell of index.csv (``line`` counts the header as 1)."""
    with (probe / "index.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows[line - 2][column] = value
    with (probe / "index.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plant_outside(probe: Path, case: str, column: str) -> str:
    """Make row LINE's ``column`` (image or object) name a file outside the probe folder, a
    readable copy of the file it named (so the old code reads it without complaint); returns
    the name the error must show."""
    own = IMAGE if column == "image" else LABEL
    secret = probe.parent / f"secret-{own}"
    shutil.copy(probe / "images" / own, secret)
    if case == "dotdot":
        set_cell(probe, LINE, column, f"../../{secret.name}")
    elif case == "absolute":
        set_cell(probe, LINE, column, str(secret))
    else:  # a link inside images/ that points out of the probe folder
        (probe / "images" / own).unlink()
        (probe / "images" / own).symlink_to(secret)
        return own
    return secret.name


CASES = [
    (case, column) for case in ("dotdot", "absolute", "symlink") for column in ("image", "object")
]


@pytest.mark.parametrize(("case", "column"), CASES)
def test_probe_info_refuses_a_name_that_leaves_the_probe(
    probe: Path, case: str, column: str
) -> None:
    shown = plant_outside(probe, case, column)
    code, out = lce("probe", "info", probe)
    assert code == 1, out
    problems = [x for x in out.splitlines() if "leaves" in x]
    assert len(problems) == 1, out
    assert shown in problems[0] and f"index.csv line {LINE}" in problems[0], problems


@pytest.mark.parametrize(("case", "column"), CASES)
def test_extract_refuses_a_name_that_leaves_the_probe(
    probe: Path, tmp_path: Path, case: str, column: str
) -> None:
    shown = plant_outside(probe, case, column)
    code, out = extract(probe, tmp_path / "lake")
    assert_clean_failure(code, out, tmp_path / "lake", shown, "leaves", f"index.csv line {LINE}")


def test_a_linked_images_folder_is_still_read(probe: Path, tmp_path: Path) -> None:
    """The folder itself may be a link (benchmarks share images/ with a larger probe set): only
    names that leave it are refused."""
    shared = tmp_path / "shared-images"
    (probe / "images").rename(shared)
    (probe / "images").symlink_to(shared)
    code, out = lce("probe", "info", probe)
    assert code == 0 and "no problems found" in out, out


@pytest.mark.parametrize("entry", ["image", "annotation"])
def test_probe_from_coco_refuses_a_file_name_that_leaves_its_folder(
    tmp_path: Path, entry: str
) -> None:
    coco = tmp_path / "coco"
    write_coco(coco)
    doc_path = coco / "annotations" / "panoptic_val2017.json"
    doc = json.loads(doc_path.read_text())
    if entry == "image":  # an absolute path to a real image outside the dataset
        outside = shutil.copy(coco / "val2017" / "000000000139.jpg", tmp_path / "elsewhere.jpg")
        doc["images"][0]["file_name"] = str(outside)
        shown = str(outside)
    else:
        shutil.copy(coco / "annotations" / "panoptic_val2017" / "000000000139.png", tmp_path)
        doc["annotations"][0]["file_name"] = "../../../000000000139.png"
        shown = "../../../000000000139.png"
    doc_path.write_text(json.dumps(doc))
    out = tmp_path / "probe"
    code, text = lce("probe", "from", "coco-panoptic", coco, out, "--size", 40)
    lines = [x for x in text.strip().splitlines() if x.strip()]
    assert code != 0 and len(lines) == 1 and lines[0].startswith("error:"), text
    assert shown in text and "leaves" in text and "139" in text, text
    assert not out.exists() and not list(tmp_path.glob(".probe*")), "output left behind"


def test_the_explorer_shows_only_what_extract_reads(probe: Path) -> None:
    """The Units page's images go through the same check: a name that leaves the probe folder,
    a link out of it and a FIFO are not shown; a plain image is."""
    from lce.explore.images import resolve_probe_image

    shutil.copy(probe / "images" / IMAGE, probe.parent / "secret.png")
    (probe / "images" / "link.png").symlink_to(probe.parent / "secret.png")
    os.mkfifo(probe / "images" / "fifo.png")
    for name in ("../../secret.png", str(probe.parent / "secret.png"), "link.png", "fifo.png"):
        assert resolve_probe_image(probe, name) is None, name
    assert resolve_probe_image(probe, IMAGE) == probe / "images" / IMAGE


def run_cli(*args: str | Path) -> subprocess.CompletedProcess:
    """The real `lce` in a fresh process, with a timeout: reading a FIFO with no writer blocks
    forever, so the old code would hang here instead of failing."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "lce.cli", *map(str, args)],
            env=cli_env(),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"lce {' '.join(map(str, args))} blocked on a FIFO")


def plant_fifo(probe: Path, column: str) -> str:
    """Replace row LINE's image or object map by a FIFO with no writer; returns its name."""
    own = IMAGE if column == "image" else LABEL
    (probe / "images" / own).unlink()
    os.mkfifo(probe / "images" / own)
    return own


@pytest.mark.parametrize("column", ["image", "object"])
def test_probe_info_refuses_a_fifo(probe: Path, column: str) -> None:
    own = plant_fifo(probe, column)
    info = run_cli("probe", "info", probe)
    assert info.returncode == 1, info.stdout + info.stderr
    problems = [x for x in info.stdout.splitlines() if "FIFO" in x]
    assert len(problems) == 1 and own in problems[0] and f"line {LINE}" in problems[0], info.stdout


@pytest.mark.parametrize("column", ["image", "object"])
def test_extract_refuses_a_fifo(probe: Path, tmp_path: Path, column: str) -> None:
    own = plant_fifo(probe, column)
    lake = tmp_path / "lake"
    proc = run_cli(
        "extract", "probe_factory:small_cnn", "--layer", "block1", "--probe", f"broden:{probe}",
        "--lake", lake, "--name", "cnn", "--batch-size", "2", "--workers", "0",
    )  # fmt: skip
    assert_clean_failure(proc.returncode, proc.stderr, lake, own, "is a FIFO", f"line {LINE}")


def test_probe_from_refuses_a_fifo(tmp_path: Path) -> None:
    coco = tmp_path / "coco"
    write_coco(coco)
    image = coco / "val2017" / "000000000140.jpg"
    image.unlink()
    os.mkfifo(image)
    out = tmp_path / "probe"
    proc = run_cli("probe", "from", "coco-panoptic", coco, out, "--size", 40)
    lines = [x for x in proc.stderr.strip().splitlines() if x.strip()]
    assert proc.returncode != 0 and len(lines) == 1, proc.stdout + proc.stderr
    assert "000000000140.jpg" in lines[0] and "is a FIFO" in lines[0], lines
    assert not out.exists()
