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

import pytest

from tests.conftest import REFERENCE, REPO, needs_reference

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
import sys
from streamlit.testing.v1 import AppTest
from lce.cli_warehouse import app_script
at = AppTest.from_file(str(app_script()), default_timeout=120).run()
assert not at.exception, [e.value for e in at.exception]
assert not at.warning, [w.value for w in at.warning]
print("app", app_script())
print("title", at.title[0].value)
print("metrics", {m.label: m.value for m in at.metric})
"""


@pytest.mark.slow
@needs_reference
def test_the_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path) -> None:
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
    assert wanted - {"pyproject.toml"} <= names, sorted(wanted - names)
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
    work.mkdir()
    env = {**env, "PYTHONPATH": str(site)}  # the checkout is not on the path; cwd is outside it
    lce = [str(site / "bin" / "lce")]
    where = run([python, "-c", "import lce, warehouse.paths as p; print(lce.__file__);"
                 "print(p.dbt_project_dir())"], work, env)  # fmt: skip
    assert all(line.startswith(str(site)) for line in where.split()), where

    run([*lce, "reference", "load", "--from", str(REFERENCE)], work, env)
    run([*lce, "build", "--var", "n_boot=20", "--var", "stability_resamples=5",
         "--var", "similarity_permutations=9"], work, env)  # fmt: skip
    db = work / "lce-data" / "lce.duckdb"
    assert db.is_file()
    info = run([*lce, "info"], work, env)
    assert "this lce reads it" in info and "paper-2022" in info
    app = run([python, "-c", APP_CHECK], work, {**env, "LCE_DB": str(db)})
    assert f"app {site}" in app and "title Overview" in app and "'models': '20'" in app

    # nothing was written into the installed package (a system site-packages is read-only)
    after = {p for p in site.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert after == installed, sorted(str(p) for p in after ^ installed)
