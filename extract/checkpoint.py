"""The extraction checkpoint: one torch file per work folder, written atomically.

Format (``torch.load(weights_only=True)`` reads it): ``pass`` (1 or 3: pass 2, the thresholds,
takes none) and ``batch`` (batches of that pass done), ``key`` (the run's settings key, passed in by the engine), the run's lists
(``n_seen``, ``skipped``, ``cache_shapes``, ``kept_batches``, ``cache_bytes``, ``feature_bytes``),
and ``layers``: ``{layer: {name: state_dict}}`` of the running states (extract/running.py):
``select``, ``stats``, ``top`` in pass 1; ``stats``, ``top``, ``thresholds``, ``tally`` in pass 3;
plus ``top_maps`` in pass 3. A checkpoint written before the passes were numbered 1-3 says
``pass`` 2 for the tally; it is read as 3.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import Any

import torch

from base.errors import LceError

REQUIRED = {"pass", "batch", "key", "layers", "n_seen", "skipped", "cache_shapes", "kept_batches",
            "cache_bytes", "feature_bytes"}  # fmt: skip


def save(path: Path, state: dict[str, Any], key: str) -> int:
    """Write ``state`` under ``key`` atomically; returns its size in bytes."""
    buffer = io.BytesIO()
    torch.save(dict(state, key=key), buffer)
    tmp = path.with_suffix(".tmp")
    try:
        # Serialised in memory (it is small: sparse counts), written with plain file I/O: on a
        # full disk torch's own writer says only "unexpected pos 64 vs 0"; this says ENOSPC.
        with tmp.open("wb") as fh:
            fh.write(buffer.getbuffer())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        reason = exc.strerror or str(exc).strip().splitlines()[0] or type(exc).__name__
        raise LceError(f"{path}: cannot write the checkpoint: {reason}") from None
    return buffer.getbuffer().nbytes


def _warn(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")


def load(
    path: Path, key: str, layers: dict[str, int], cache: bool, features: bool
) -> dict[str, Any] | None:
    """The checkpoint of this run's work folder, or None to start over.

    ``layers``: each layer's number of units. A checkpoint that cannot be read or does not fit
    this run (truncated, tampered with, from another version, its cache gone) is discarded with
    a warning: resuming from it could only give wrong numbers or a traceback, and starting over
    costs time, not correctness."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and state.get("pass") == 2:
            state["pass"] = 3  # the tally, from before the passes were numbered as the bars
        problem = _problem(state, path, key, layers, cache, features)
    except Exception as exc:
        problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if problem:
        _warn(f"{path}: checkpoint discarded, starting over ({problem[:200]})")
        path.unlink(missing_ok=True)
        return None
    return state


def _problem(
    state: Any, path: Path, key: str, layers: dict[str, int], cache: bool, features: bool
) -> str | None:
    if not isinstance(state, dict) or not set(state) >= REQUIRED:
        return "not an lce checkpoint of this version"
    if state["key"] != key or state["pass"] not in (1, 3):
        return "made by a run with other settings"
    for name, n_units in layers.items():
        layer = state["layers"].get(name)
        wanted = {"stats", "top", "select"} if state["pass"] == 1 else {"stats", "top", "tally"}
        if not isinstance(layer, dict) or not set(layer) >= wanted:
            return f"layer {name!r} does not match"
        if state["pass"] == 1 and layer["select"].get("n_units") != n_units:
            return f"layer {name!r} does not match"
        if state["pass"] == 3 and len(layer.get("thresholds", ())) != n_units:
            return f"layer {name!r} has no thresholds"
    if state["pass"] == 3 and not set(state.get("top_maps", {})) >= set(layers):
        return "no top-image maps (a checkpoint of an older version)"
    if state["pass"] == 3 and not all(
        isinstance(state["top_maps"][n], dict) and "pairs" in state["top_maps"][n] for n in layers
    ):
        return "top-image maps stored one tensor each (a checkpoint of an older version)"
    activations = path.parent / "activations.bin"
    if cache and (not activations.is_file() or activations.stat().st_size < state["cache_bytes"]):
        return "its activation cache is missing or shorter than recorded"
    means = path.parent / "features.bin"
    if features and (not means.is_file() or means.stat().st_size < state["feature_bytes"]):
        return "its image features file is missing or shorter than recorded"
    return None
