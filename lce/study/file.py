"""The study file (``study.toml``): read with tomllib, every key checked before any work.

A study is one probe set, one set of dissection settings, the models with their layers, the
task results and the dbt vars of the build. Each (model, layer) is one job (``Job``): the unit
that `lce study plan` reports on and that the shards of `lce study run` share out. Paths in the
file are relative to the file's folder, so a study folder can move as a whole. A key that is
unknown, of the wrong type or out of range is one line naming the file, the table and the key
(and, for an unknown key, the keys that table takes).
"""

from __future__ import annotations

import difflib
import json
import os
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from base.errors import LceError
from extract import registry
from extract.config import DEFAULT_INIT_SEED, DEFAULTS, NORMALIZATIONS, ExtractConfig, check_config
from warehouse.build import VARS, parse_vars
from warehouse.lake import check_name

TOP_KEYS = ("probe", "dissection", "models", "benchmarks", "build")
PROBE_KEYS = ("path",)
# [dissection]: key -> (type, default); the defaults are ExtractConfig's (extract/config.py).
DISSECTION_KEYS: dict[str, tuple[type, Any]] = {
    "quantile": (float, DEFAULTS["quantile"]),
    "basis": (str, DEFAULTS["basis"]),
    "batch_size": (int, DEFAULTS["batch_size"]),
    "top_images": (int, DEFAULTS["top_images"]),
    "null_permutations": (int, DEFAULTS["null_permutations"]),
    "null_seed": (int, DEFAULTS["null_seed"]),
    "folds": (int, DEFAULTS["folds"]),
    "fold_seed": (int, DEFAULTS["fold_seed"]),
    "features": (bool, DEFAULTS["features"]),
    "device": (str, DEFAULTS["device"]),
    "workers": (int, DEFAULTS["workers"]),
    "checkpoint_every": (int, DEFAULTS["checkpoint_every"]),
    "skip_bad": (bool, DEFAULTS["skip_bad"]),
    "cache": (bool, DEFAULTS["cache"]),
}
MODEL_KEYS: dict[str, tuple[type, Any]] = {
    "name": (str, None),
    "registry": (str, None),
    "spec": (str, None),
    "weights": (str, None),
    "layers": (list, None),
    "normalize": (str, DEFAULTS["normalize"]),
    "non_strict": (bool, not DEFAULTS["strict"]),
    "seed": (int, DEFAULTS["seed"]),
    "cost": (float, 1.0),
}
BENCHMARK_KEYS = ("file", "source")


@dataclass(frozen=True)
class Dissection:
    """The settings every job of the study shares ([dissection])."""

    quantile: float = DEFAULTS["quantile"]
    basis: str = DEFAULTS["basis"]
    batch_size: int = DEFAULTS["batch_size"]
    top_images: int = DEFAULTS["top_images"]
    null_permutations: int = DEFAULTS["null_permutations"]
    null_seed: int = DEFAULTS["null_seed"]
    folds: int = DEFAULTS["folds"]
    fold_seed: int = DEFAULTS["fold_seed"]
    features: bool = DEFAULTS["features"]
    device: str = DEFAULTS["device"]
    workers: int = DEFAULTS["workers"]
    checkpoint_every: int = DEFAULTS["checkpoint_every"]
    skip_bad: bool = DEFAULTS["skip_bad"]
    cache: bool = DEFAULTS["cache"]


@dataclass(frozen=True)
class StudyModel:
    """One [[models]] entry. ``spec`` is what `lce extract` takes as MODEL (a registry name or a
    torchvision:/timm:/module:function spec); ``cost`` is the relative cost of one of its layers,
    which the shards balance."""

    name: str
    spec: str
    weights: Path | None
    layers: tuple[str, ...]
    normalize: str = "auto"
    non_strict: bool = False
    seed: int = DEFAULT_INIT_SEED
    cost: float = 1.0


@dataclass(frozen=True)
class Benchmark:
    file: Path
    source: str


@dataclass(frozen=True)
class Job:
    """One (model, layer) of the study; ``order`` is the layer's place in the model's list (its
    runs.layer_order: 0 is the primary layer the embedding uses)."""

    model: StudyModel
    layer: str
    order: int

    @property
    def label(self) -> str:
        return f"{self.model.name} {self.layer}"


@dataclass(frozen=True)
class Study:
    path: Path
    probe: Path
    dissection: Dissection
    models: tuple[StudyModel, ...]
    benchmarks: tuple[Benchmark, ...] = ()
    build_vars: dict[str, Any] = field(default_factory=dict)

    def jobs(self) -> list[Job]:
        """Every (model, layer), sorted by model name then layer: the order shards split."""
        jobs = [Job(m, layer, i) for m in self.models for i, layer in enumerate(m.layers)]
        return sorted(jobs, key=lambda j: (j.model.name, j.layer))

    def extract_config(self, job: Job, lake: Path, progress: bool = False) -> ExtractConfig:
        """The settings of `lce extract` for one job: the same engine, one layer."""
        d, m = self.dissection, job.model
        return ExtractConfig(
            model=m.spec, layers=[job.layer], probe=self.probe, lake=lake, name=m.name,
            weights=m.weights, quantile=d.quantile, basis=d.basis, batch_size=d.batch_size,
            device=d.device, top_images=d.top_images, normalize=m.normalize,
            strict=not m.non_strict, skip_bad=d.skip_bad, cache=d.cache, resume=True,
            workers=d.workers, checkpoint_every=max(1, d.checkpoint_every),
            null_permutations=d.null_permutations, null_seed=d.null_seed, seed=m.seed,
            folds=d.folds, fold_seed=d.fold_seed,
            features=d.features, progress=progress, layer_offset=job.order,
        )  # fmt: skip


def load_study(path: Path) -> Study:
    """Read and check a study file; any problem is one LceError naming the file and the key."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LceError(f"{path}: no such study file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LceError(f"{path}: cannot read the study file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise LceError(f"{path}: not valid TOML: {exc}") from None
    where = Where(path)
    where.keys(raw, TOP_KEYS, "the file")
    base = path.resolve().parent
    study = Study(
        path=path,
        probe=_probe(raw.get("probe"), base, where),
        dissection=_dissection(raw.get("dissection", {}), where),
        models=_models(raw.get("models"), base, where),
        benchmarks=_benchmarks(raw.get("benchmarks", []), base, where),
        build_vars=_build_vars(raw.get("build", {}), where),
    )
    for job in study.jobs():  # the engine's own checks, worded for the file
        try:
            check_config(study.extract_config(job, base))
        except LceError as exc:
            raise LceError(f"{path}: [[models]] {job.model.name!r}: {exc}") from None
    return study


def make_importable(study: Study) -> None:
    """Put the study file's folder on the import path (appended, never shadowing an installed
    package), so a module:function spec beside the study file loads wherever lce runs from."""
    folder = str(study.path.resolve().parent)
    if folder not in sys.path:
        sys.path.append(folder)


@dataclass(frozen=True)
class Where:
    """Formats errors as ``FILE: [table] key: problem``."""

    path: Path

    def fail(self, table: str, key: str, problem: str) -> LceError:
        return LceError(f"{self.path}: {table} {key}: {problem}".replace("  ", " "))

    def keys(self, table: Any, expected: tuple[str, ...] | dict[str, Any], name: str) -> None:
        if not isinstance(table, dict):
            raise LceError(f"{self.path}: {name}: expected a table, got {type(table).__name__}")
        for key in table:
            if key not in expected:
                close = difflib.get_close_matches(key, list(expected), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise LceError(
                    f"{self.path}: {name}: unknown key {key!r}{hint}; expected one of "
                    f"{', '.join(expected)}"
                )

    def typed(self, table: dict[str, Any], key: str, kind: type, default: Any, name: str) -> Any:
        if key not in table:
            return default
        value = table[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            wanted = {float: "a number", int: "an integer", str: "a string", bool: "true or false",
                      list: "a list"}[kind]  # fmt: skip
            raise self.fail(name, key, f"expected {wanted}, got {json.dumps(value, default=str)}")
        return value


def _path(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


def _probe(table: Any, base: Path, where: Where) -> Path:
    if table is None:
        raise LceError(f'{where.path}: missing [probe] table (path = "broden:PATH")')
    where.keys(table, PROBE_KEYS, "[probe]")
    spec = where.typed(table, "path", str, None, "[probe]")
    kind, sep, rest = (spec or "").partition(":")
    if kind != "broden" or not sep or not rest:
        raise where.fail("[probe]", "path", f'expected "broden:PATH", got {spec!r}')
    return _path(rest, base)


def _dissection(table: Any, where: Where) -> Dissection:
    where.keys(table, DISSECTION_KEYS, "[dissection]")
    values = {
        k: where.typed(table, k, t, d, "[dissection]") for k, (t, d) in DISSECTION_KEYS.items()
    }
    if values["workers"] < 0:
        raise where.fail("[dissection]", "workers", "expected an integer >= 0")
    return Dissection(**values)


def _models(entries: Any, base: Path, where: Where) -> tuple[StudyModel, ...]:
    if not isinstance(entries, list) or not entries:
        raise LceError(f"{where.path}: expected at least one [[models]] table")
    models: list[StudyModel] = []
    for i, table in enumerate(entries, 1):
        name = f"[[models]] #{i}"
        where.keys(table, MODEL_KEYS, name)
        values = {k: where.typed(table, k, t, d, name) for k, (t, d) in MODEL_KEYS.items()}
        if values["name"] is None:
            raise where.fail(name, "name", "missing (the model's name in the lake)")
        check_name(f"{where.path}: {name} name", values["name"])
        name = f"[[models]] {values['name']!r}"
        if any(m.name == values["name"] for m in models):
            raise where.fail(name, "name", "used twice (each model needs its own name)")
        models.append(_model(values, name, base, where))
    return tuple(models)


def _model(values: dict[str, Any], name: str, base: Path, where: Where) -> StudyModel:
    if (values["registry"] is None) == (values["spec"] is None):
        raise where.fail(name, "registry/spec", "give exactly one of registry = \"NAME\" "
                         "(`lce models`) or spec = \"torchvision:ARCH\" / \"timm:NAME\" / "
                         "\"module:function\"")  # fmt: skip
    if values["registry"] is not None and registry.lookup(values["registry"]) is None:
        raise where.fail(name, "registry", f"{values['registry']!r} is not in the registry "
                         "(`lce models` lists it)")  # fmt: skip
    if values["spec"] is not None and ":" not in values["spec"]:
        raise where.fail(name, "spec", f"{values['spec']!r}: expected torchvision:ARCH, "
                         "timm:NAME or module:function (a registry name goes in registry)")  # fmt: skip
    weights = None
    if values["weights"] is not None:
        weights = _path(values["weights"], base)
        if not weights.is_file():
            raise where.fail(name, "weights", f"no such file {weights}")
    layers = values["layers"]
    if not layers or not all(isinstance(x, str) and x for x in layers):
        raise where.fail(name, "layers", "expected a non-empty list of module paths")
    if len(set(layers)) != len(layers):
        raise where.fail(name, "layers", f"a layer is listed twice: {layers}")
    if values["normalize"] not in {"auto", *NORMALIZATIONS}:
        raise where.fail(name, "normalize", f"expected auto, {', '.join(NORMALIZATIONS)}")
    if not values["cost"] > 0:
        raise where.fail(name, "cost", "expected a number > 0")
    spec = str(values["registry"] or values["spec"])
    return StudyModel(
        name=values["name"], spec=spec, weights=weights,
        layers=tuple(layers), normalize=values["normalize"], non_strict=values["non_strict"],
        seed=values["seed"], cost=values["cost"],
    )  # fmt: skip


def _benchmarks(entries: Any, base: Path, where: Where) -> tuple[Benchmark, ...]:
    if not isinstance(entries, list):
        raise LceError(f"{where.path}: benchmarks: expected [[benchmarks]] tables")
    out: list[Benchmark] = []
    for i, table in enumerate(entries, 1):
        name = f"[[benchmarks]] #{i}"
        where.keys(table, BENCHMARK_KEYS, name)
        file = where.typed(table, "file", str, None, name)
        if file is None:
            raise where.fail(name, "file", "missing (CSV or Parquet of task results)")
        path = _path(file, base)
        if not path.is_file():
            raise where.fail(name, "file", f"no such file {path}")
        source = where.typed(table, "source", str, path.stem, name)
        if any(b.source == source for b in out):
            raise where.fail(name, "source", f"{source!r} used twice")
        out.append(Benchmark(path, check_name(f"{where.path}: {name} source", source)))
    return tuple(out)


def _build_vars(table: Any, where: Where) -> dict[str, Any]:
    where.keys(table, VARS, "[build]")
    try:
        return parse_vars([f"{k}={json.dumps(v)}" for k, v in table.items()])
    except LceError as exc:
        raise LceError(f"{where.path}: [build] {exc}") from None
