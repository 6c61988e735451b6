"""The study file: the issue's minimal file as written, the shipped paper study, and one line
naming the file and the key for each kind of bad input (checked before any work)."""

from __future__ import annotations

from pathlib import Path

import pytest

from base.errors import LceError
from extract.registry import REGISTRY
from lce.study.file import load_study
from tests.conftest import REPO

MINIMAL = """\
[probe]
path = "broden:probe"

[dissection]
quantile = 0.005
basis = "raw"

[[models]]
name = "a"
spec = "torchvision:resnet18"
weights = "a.pt"
layers = ["layer3", "layer4"]
"""


def write(folder: Path, text: str, weights: tuple[str, ...] = ("a.pt",)) -> Path:
    for name in weights:
        (folder / name).write_bytes(b"not read before a job runs")
    path = folder / "study.toml"
    path.write_text(text)
    return path


def test_minimal_file_as_written(tmp_path: Path) -> None:
    study = load_study(write(tmp_path, MINIMAL))
    assert study.probe == tmp_path.resolve() / "probe"  # relative to the study file
    assert study.dissection.quantile == 0.005 and study.dissection.basis == "raw"
    (model,) = study.models
    assert (model.name, model.spec, model.weights) == (
        "a", "torchvision:resnet18", tmp_path.resolve() / "a.pt"
    )  # fmt: skip
    assert [(j.model.name, j.layer, j.order) for j in study.jobs()] == [
        ("a", "layer3", 0), ("a", "layer4", 1)
    ]  # fmt: skip
    cfg = study.extract_config(study.jobs()[1], tmp_path / "lake")
    assert (cfg.layers, cfg.layer_offset, cfg.resume, cfg.name) == (["layer4"], 1, True, "a")


def test_paper_study_names_the_registry() -> None:
    study = load_study(REPO / "studies" / "paper-2022.toml")
    assert sorted(m.spec for m in study.models) == sorted(e.name for e in REGISTRY)
    assert len(study.models) == 15
    assert {m.layers for m in study.models} == {("layer4",)}
    assert study.probe.name == "broden1_224"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("weights = ", "wieghts = "), "[[models]] #1: unknown key 'wieghts' (did you mean "
         "'weights'?); expected one of name, registry, spec, weights, layers"),
        (("quantile = 0.005", "quantile = 2.0"), "quantile 2.0: expected a number between 0"),
        (("quantile = 0.005", "quantile = \"x\""), "[dissection] quantile: expected a number"),
        (("basis = \"raw\"", "basis = \"raw\"\nbatchsize = 3"), "[dissection]: unknown key "
         "'batchsize' (did you mean 'batch_size'?)"),
        (("weights = \"a.pt\"", "weights = \"b.pt\""), "[[models]] 'a' weights: no such file"),
        (("layers = [\"layer3\", \"layer4\"]", "layers = []"), "'a' layers: expected a non-empty"),
        (("layers = [\"layer3\", \"layer4\"]", "layers = [\"l\", \"l\"]"), "listed twice"),
        (("spec = \"torchvision:resnet18\"", "registry = \"nope\""), "'nope' is not in the "
         "registry"),
        (("spec = \"torchvision:resnet18\"", "spec = \"resnet18\""), "expected torchvision:ARCH"),
        (("path = \"broden:probe\"", "path = \"probe\""), "[probe] path: expected \"broden:PATH\""),
        (("[dissection]", "[build]\nn_categories = 0\n[dissection]"), "[build] --var"),
        (("[dissection]", "[bulid]\n[dissection]"), "the file: unknown key 'bulid' (did you "
         "mean 'build'?)"),
    ],
)  # fmt: skip
def test_bad_key_is_one_line_naming_file_and_key(
    tmp_path: Path, edit: tuple[str, str], expected: str
) -> None:
    path = write(tmp_path, MINIMAL.replace(*edit))
    with pytest.raises(LceError) as info:
        load_study(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert expected in message


def test_model_name_used_twice(tmp_path: Path) -> None:
    second = MINIMAL[MINIMAL.index("[[models]]") :]
    path = write(tmp_path, MINIMAL + "\n" + second)
    with pytest.raises(LceError, match=r"\[\[models\]\] 'a' name: used twice"):
        load_study(path)


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LceError, match="no such study file"):
        load_study(tmp_path / "none.toml")
    with pytest.raises(LceError, match="not valid TOML"):
        load_study(write(tmp_path, "[probe\n"))
