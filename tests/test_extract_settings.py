"""`lce extract`'s options are ExtractConfig's settings: every setting has its option, and each
option shows the setting's own default and help text (written once, in extract/config.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import typer

from base.errors import LceError
from extract.config import CLI_WORKERS, DEFAULTS, HELP, ExtractConfig, check_config
from lce.cli import app

# Settings the command line sets itself rather than by an option of the same name.
NOT_OPTIONS = {"progress", "stop_after_batches", "layer_offset"}
# Option name -> setting, where they differ.
RENAMED = {"layer": "layers"}


def extract_params() -> dict[str, typer.core.click.Parameter]:
    command = typer.main.get_command(app)
    sub = command.commands["extract"]  # type: ignore[attr-defined]
    return {RENAMED.get(p.name, p.name): p for p in sub.params}


def test_every_setting_is_an_option_with_the_settings_default_and_help() -> None:
    params = extract_params()
    settings = set(DEFAULTS) - NOT_OPTIONS
    assert settings <= set(params), settings - set(params)
    for name in settings:
        param = params[name]
        if name == "lake":
            continue  # shared by every command: lce.cli_common's LakeOpt
        assert HELP[name] and HELP[name] in (param.help or ""), name  # type: ignore[attr-defined]
        if not param.required:
            want = CLI_WORKERS if name == "workers" else DEFAULTS[name]
            assert param.default == want, (name, param.default, want)
    # the flags that switch a setting off keep their old spelling
    assert "--non-strict" in params["strict"].secondary_opts  # type: ignore[attr-defined]
    assert "--no-cache" in params["cache"].secondary_opts  # type: ignore[attr-defined]


def test_the_checks_name_the_setting_not_a_flag() -> None:
    base = ExtractConfig(model="m", layers=["a"], probe=None, lake=None)  # type: ignore[arg-type]
    for changes, needle in [
        ({"quantile": 1.5}, "quantile 1.5"),
        ({"basis": "pixels"}, "basis 'pixels'"),
        ({"null_permutations": 1001}, "null_permutations 1001"),
        ({"layers": ["a", "a"]}, "layers"),
    ]:
        with pytest.raises(LceError) as caught:
            check_config(replace(base, **changes))  # type: ignore[arg-type]
        assert needle in str(caught.value) and "--" not in str(caught.value), caught.value
