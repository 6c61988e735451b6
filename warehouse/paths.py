"""Where lce keeps its files: everything lives under one LCE_HOME unless a path is overridden."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = "lce-data"
DB_NAME = "lce.duckdb"


def home_dir() -> Path:
    """LCE_HOME, default ./lce-data: one home is one study (lake + published database)."""
    return Path(os.environ.get("LCE_HOME", DEFAULT_HOME))


def demo_dir() -> Path:
    """`lce demo`'s default work folder: $LCE_HOME/demo (./lce-data/demo without LCE_HOME), so
    the demo, like every other command, keeps its files in the home."""
    return home_dir() / "demo"


def lake_dir(override: Path | None = None) -> Path:
    if override is not None:
        return Path(override)
    return home_dir() / "lake"


def db_path(override: Path | None = None) -> Path:
    if override is not None:
        return Path(override)
    env = os.environ.get("LCE_DB")
    return Path(env) if env else home_dir() / DB_NAME


def project_root() -> Path:
    """The repository root in a checkout (or an editable install): the folder above the
    packages, where dbt_project/, app.py and app_pages/ sit."""
    return Path(__file__).resolve().parent.parent


def dbt_project_dir() -> Path:
    """The dbt project: installed as package data beside this module (warehouse/dbt_project/,
    a wheel or `pip install .`), else the checkout's top-level dbt_project/."""
    installed = Path(__file__).resolve().parent / "dbt_project"
    if (installed / "dbt_project.yml").is_file():
        return installed
    return project_root() / "dbt_project"
