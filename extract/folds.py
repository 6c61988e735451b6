"""Which fold each probe image belongs to, for the fold tallies (``lce extract --folds K``).

An image's fold is ``int(sha256(f"{seed}:{image}"), 16) mod K``, ``image`` being its path in the
probe set (the lake's ``image`` column). A hash of the name, not of the image's place in the
probe: the fold does not depend on the order of the images, on the batch size, on the torchrun
shard or on which other images the probe holds, so every model of a study (and a rerun, or a
resumed run) splits the probe the same way, and anyone can recompute the folds from the image
names and the seed recorded in ``runs.settings``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from extract.config import FOLD_SEED


def fold_of(image: str, folds: int, seed: int = FOLD_SEED) -> int:
    """The fold (0 .. folds - 1) of one image."""
    digest = hashlib.sha256(f"{seed}:{image}".encode()).hexdigest()
    return int(digest, 16) % folds


def fold_index(images: Sequence[str], folds: int, seed: int = FOLD_SEED) -> np.ndarray:
    """Every image's fold, in the order given (int64)."""
    return np.array([fold_of(image, folds, seed) for image in images], dtype=np.int64)
