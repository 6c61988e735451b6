"""The outline of a unit's mask shows on any colour, magenta objects included (a halo)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from lce.explore import OUTLINE_RGB
from lce.explore.images import outlined_image

CROSS = ndimage.generate_binary_structure(2, 1)


def contrast(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Largest channel difference between two RGB arrays, per pixel."""
    return np.abs(a.astype(int) - b.astype(int)).max(axis=-1)


def test_the_outline_stands_out_on_a_magenta_object(tmp_path: Path) -> None:
    """A magenta image (the outline's own colour) with a mask inside it: every outline pixel
    touches a pixel that differs from magenta by at least half the range, and the ring just
    outside the mask (scipy's dilation, not the drawing code) is what changed besides the
    outline."""
    label = np.zeros((12, 12), bool)
    label[3:9, 4:10] = True
    path = tmp_path / "magenta.png"
    Image.new("RGB", (24, 24), OUTLINE_RGB).save(path)
    pixels = outlined_image(path, label)
    original = np.asarray(Image.open(path).convert("RGB"))
    scale = 2
    inner = label & ~ndimage.binary_erosion(label, CROSS, border_value=0)
    ring = ndimage.binary_dilation(label, CROSS) & ~label
    big = np.kron(inner, np.ones((scale, scale), bool))
    halo = np.kron(ring, np.ones((scale, scale), bool))
    assert (pixels[big] == np.array(OUTLINE_RGB, np.uint8)).all()  # the outline, in its colour
    # the halo: the outer ring only, and far from magenta
    changed = contrast(pixels, original) > 0
    np.testing.assert_array_equal(changed, halo)
    assert (contrast(pixels[halo], np.array(OUTLINE_RGB)) >= 128).all()
    # every outline pixel has a visible neighbour (4-neighbourhood, within the image)
    padded = np.pad(contrast(pixels, np.broadcast_to(np.array(OUTLINE_RGB), pixels.shape)), 1)
    best = np.maximum.reduce([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2],
                              padded[1:-1, 2:]])  # fmt: skip
    outer_outline = big & ndimage.binary_dilation(halo, CROSS)
    assert outer_outline.any() and (best[outer_outline] >= 128).all()


def test_the_halo_contrasts_with_dark_and_light_pixels(tmp_path: Path) -> None:
    """Left half black, right half white: the halo is white on the black half, black on the
    white half (the luma rule, worked by hand)."""
    label = np.zeros((12, 12), bool)
    label[4:8, 2:10] = True
    image = np.zeros((24, 24, 3), np.uint8)
    image[:, 12:] = 255
    path = tmp_path / "half.png"
    Image.fromarray(image).save(path)
    pixels = outlined_image(path, label)
    ring = np.kron(ndimage.binary_dilation(label, CROSS) & ~label, np.ones((2, 2), bool))
    left, right = ring.copy(), ring.copy()
    left[:, 12:] = False
    right[:, :12] = False
    assert (pixels[left] == 255).all() and (pixels[right] == 0).all()
