"""lce as a package that installs anywhere: the wheel holds every subpackage, the dbt project and
the app's pages, and the installed lce loads the paper's data, builds, describes and serves its
warehouse from a folder outside the checkout (nothing of the checkout importable)."""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import duckdb
import pytest

from tests.conftest import REFERENCE, REPO, needs_reference
from tests.old_release import old_lake
from tests.study_reference import built_study, expected_study

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
# What the wheel is built from: the files git knows (tracked, or new and not ignored).
SOURCES = ("pyproject.toml", "README.md", "base/", "lce/", "warehouse/", "extract/",
           "dbt_project/", "app.py", "app_pages/")  # fmt: skip


def source_files() -> list[str]:
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    return sorted(f for f in listed if f.startswith(SOURCES) and (REPO / f).is_file())


def wheel_path(name: str) -> str:
    """Where a repository file lies in the wheel (the package-dir mappings of pyproject)."""
    for package, folder in SETUPTOOLS["package-dir"].items():
        prefix = "" if folder == "." else folder + "/"
        if name.startswith(prefix) and (folder != "." or "/" not in name):
            return package.replace(".", "/") + "/" + name.removeprefix(prefix)
    return name


def test_every_subpackage_and_data_file_is_configured() -> None:
    """A new subpackage, or a dbt file the package-data patterns miss, fails here first."""
    packages = {
        str(p.parent.relative_to(REPO)).replace("/", ".")
        for top in ("base", "lce", "warehouse", "extract")
        for p in (REPO / top).rglob("__init__.py")
    }
    assert packages <= set(SETUPTOOLS["packages"]), sorted(packages - set(SETUPTOOLS["packages"]))
    patterns = SETUPTOOLS["package-data"]["warehouse.dbt_project"]
    dbt_files = [
        f.removeprefix("dbt_project/") for f in source_files() if f.startswith("dbt_project/")
    ]
    missed = [f for f in dbt_files if not any(fnmatch.fnmatch(f, p) for p in patterns)]
    assert dbt_files and not missed, missed


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> str:
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(command)}:\n{output}"
    return output


APP_CHECK = """
from streamlit.testing.v1 import AppTest
from lce.cli_warehouse import app_script
at = AppTest.from_file(str(app_script()), default_timeout=120).run()
assert not at.exception, [e.value for e in at.exception]
assert not at.warning, [w.value for w in at.warning]
print("app", app_script())
print("title", at.title[0].value)
print("models", {m.label: m.value for m in at.metric}["models"])
print("made", " | ".join(t.value for t in at.text))
"""


@pytest.mark.slow
@needs_reference
def test_the_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    """Built once, installed with --no-deps into a folder of its own, run from a folder outside
    the checkout: the installed lce loads the paper's data into the lake lce 0.1.0 left
    (tests/old_release.py: runs without weights_sha256, no commit id) and brings it up to
    date with one build, so one dbt build checks the package and the older lake together."""
    # the wheel, built once from a copy of the sources (the checkout gets no build/ folder)
    src = tmp_path / "src"
    for name in source_files():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name)
    python = sys.executable
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LCE_HOME", "LCE_DB")}
    run([python, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "dist"), str(src)], tmp_path, env)  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("lce-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {wheel_path(f) for f in source_files() if f.endswith((".py", ".sql", ".yml"))}
    assert wanted <= names, sorted(wanted - names)
    if shutil.which("unzip"):
        listing = run(["unzip", "-l", str(wheel)], tmp_path, env)
        for part in ("lce/explore/db.py", "warehouse/dbt_project/dbt_project.yml",
                     "warehouse/dbt_project/models/marts/dim_study.sql", "lce/app/app.py",
                     "lce/app/app_pages/overview.py"):  # fmt: skip
            assert part in listing, part

    # installed without dependencies over this environment's, into a folder of its own
    site = tmp_path / "site"
    run([python, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        tmp_path, env)  # fmt: skip
    installed = {p for p in site.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    work = tmp_path / "elsewhere"
    lake = old_lake(work / "lce-data")  # the default home, ./lce-data, holds the 0.1.0 lake
    env = {**env, "PYTHONPATH": str(site)}  # the checkout is not on the path; cwd is outside it
    lce = [str(site / "bin" / "lce")]
    where = run([python, "-c", "import lce, warehouse.paths as p; print(lce.__file__);"
                 "print(p.dbt_project_dir())"], work, env)  # fmt: skip
    assert all(line.startswith(str(site)) for line in where.split()), where

    run([*lce, "reference", "load", "--from", str(REFERENCE)], work, env)
    given = {"n_boot": 20, "stability_resamples": 5, "similarity_permutations": 9,
             "min_iou": 0.05, "fdr_family": "task", "exclude_models": ["tB"], "seed": 3}  # fmt: skip
    pairs = [f"{k}={v}" for k, v in given.items() if k != "exclude_models"] + ["exclude_models=tB"]
    run([*lce, "build", *[a for p in pairs for a in ("--var", p)]], work, env)
    db = work / "lce-data" / "lce.duckdb"
    study = built_study(db)
    assert study.pop("lce_version") == built_version(site) and study.pop("built_at")
    assert study == expected_study(lake, given)
    with duckdb.connect(str(db), read_only=True) as conn:
        runs = conn.execute("select weights_sha256 from dim_runs where source = 'lce extract'")
        assert runs.fetchall() == [(None,)] * 3, "not recorded in a lake written before it"
        models = conn.execute("select count(*) from dim_models").fetchone()
    info = run([*lce, "info"], work, env)
    assert "this lce reads it" in info and "paper-2022" in info and "weights not recorded" in info
    app = run([python, "-c", APP_CHECK], work, {**env, "LCE_DB": str(db)})
    assert f"app {site}" in app and "title Overview" in app, app
    assert models is not None and f"models {models[0]}" in app, app
    assert "min_iou 0.05" in app and "fdr_family task" in app and "['tB'] (var)" in app, app

    # nothing was written into the installed package (a system site-packages is read-only)
    after = {p for p in site.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert after == installed, sorted(str(p) for p in after ^ installed)


def built_version(site: Path) -> str:
    """The version the wheel carries (its dist-info folder's name)."""
    (dist,) = site.glob("lce-*.dist-info")
    return dist.name.removeprefix("lce-").removesuffix(".dist-info")
