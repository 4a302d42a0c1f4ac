"""Space-filling curves used to order records on disk.

``z2_key`` interleaves the bits of two normalised coordinates (a Morton / Z-order key);
``xz2_key`` is the XZ-ordering of Böhm et al. for objects with extent, as in GeoMesa's
XZ2: an object is keyed by the smallest quadtree cell whose doubled extent contains it, so
near objects of similar size get near keys. Keys only decide the sort order: pruning uses
exact per-row-group bounding boxes, so a key can never cause a wrong answer.
"""

from __future__ import annotations

import numpy as np

__all__ = ["deinterleave2", "interleave2", "normalise", "xz2_key", "z2_key"]

_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_M8 = np.uint64(0x00FF00FF00FF00FF)
_M16 = np.uint64(0x0000FFFF0000FFFF)
_M32 = np.uint64(0x00000000FFFFFFFF)


def _spread(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.uint64) & _M32
    v = (v | (v << np.uint64(16))) & _M16
    v = (v | (v << np.uint64(8))) & _M8
    v = (v | (v << np.uint64(4))) & _M4
    v = (v | (v << np.uint64(2))) & _M2
    v = (v | (v << np.uint64(1))) & _M1
    return v


def _compact(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.uint64) & _M1
    v = (v | (v >> np.uint64(1))) & _M2
    v = (v | (v >> np.uint64(2))) & _M4
    v = (v | (v >> np.uint64(4))) & _M8
    v = (v | (v >> np.uint64(8))) & _M16
    v = (v | (v >> np.uint64(16))) & _M32
    return v


def interleave2(xi: np.ndarray, yi: np.ndarray) -> np.ndarray:
    """Interleave two arrays of 32-bit unsigned integers into 64-bit Morton codes.

    Examples
    --------
    >>> int(interleave2(np.array([3]), np.array([0]))[0])
    5
    """
    out: np.ndarray = _spread(np.asarray(xi)) | (_spread(np.asarray(yi)) << np.uint64(1))
    return out


def deinterleave2(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`interleave2`."""
    z = np.asarray(z, dtype=np.uint64)
    return _compact(z), _compact(z >> np.uint64(1))


def normalise(v: np.ndarray, lo: float, hi: float, bits: int) -> np.ndarray:
    """Map values in [lo, hi] onto integers 0 .. 2**bits - 1."""
    n = (1 << bits) - 1
    f = (np.asarray(v, dtype="float64") - lo) / (hi - lo)
    return np.clip(np.floor(f * n), 0, n).astype(np.uint64)


def z2_key(
    x: np.ndarray, y: np.ndarray, bounds: tuple[float, float, float, float], bits: int = 31
) -> np.ndarray:
    """Z-order key of points within ``bounds = (xmin, ymin, xmax, ymax)``."""
    xmin, ymin, xmax, ymax = bounds
    return interleave2(normalise(x, xmin, xmax, bits), normalise(y, ymin, ymax, bits))


def xz2_key(
    xmin: np.ndarray,
    ymin: np.ndarray,
    xmax: np.ndarray,
    ymax: np.ndarray,
    bounds: tuple[float, float, float, float],
    g: int = 12,
) -> np.ndarray:
    """XZ-ordering key of boxes within ``bounds`` at maximum resolution ``g`` (vectorised).

    Each box is keyed by the quadtree cell of level ``l`` that contains its lower-left
    corner, where ``l`` is the finest level whose cells, doubled in size, still cover the
    box. The key is the cell's position in a depth-first walk of the quadtree, so a
    cell's key precedes the keys of all cells inside it.
    """
    bx0, by0, bx1, by1 = bounds
    w = bx1 - bx0
    h = by1 - by0
    nx0 = np.clip((np.asarray(xmin, dtype="float64") - bx0) / w, 0.0, 1.0)
    ny0 = np.clip((np.asarray(ymin, dtype="float64") - by0) / h, 0.0, 1.0)
    nx1 = np.clip((np.asarray(xmax, dtype="float64") - bx0) / w, 0.0, 1.0)
    ny1 = np.clip((np.asarray(ymax, dtype="float64") - by0) / h, 0.0, 1.0)
    size = np.maximum(nx1 - nx0, ny1 - ny0)
    with np.errstate(divide="ignore"):
        l1 = np.where(size > 0, np.floor(np.log(np.maximum(size, 1e-300)) / np.log(0.5)), g)
    l1 = np.clip(l1, 0, g).astype(np.int64)
    # the box fits in an enlarged cell of level l1 + 1 if it does not cross two cell widths
    l2 = np.minimum(l1 + 1, g)
    cw = 0.5 ** l2.astype("float64")
    fits = (np.floor(nx0 / cw) * cw + 2 * cw >= nx1) & (np.floor(ny0 / cw) * cw + 2 * cw >= ny1)
    level = np.where((l1 < g) & fits, l2, l1)
    # sequence code: walk down `level` quadrants from the root
    key = np.zeros(nx0.shape, dtype=np.int64)
    cx0 = np.zeros_like(nx0)
    cy0 = np.zeros_like(ny0)
    half = 0.5
    for i in range(g):
        active = i < level
        if not active.any():
            break
        qx = nx0 >= cx0 + half
        qy = ny0 >= cy0 + half
        quad = qx.astype(np.int64) + 2 * qy.astype(np.int64)
        step = 1 + quad * ((4 ** (g - i) - 1) // 3)
        key = np.where(active, key + step, key)
        cx0 = np.where(active & qx, cx0 + half, cx0)
        cy0 = np.where(active & qy, cy0 + half, cy0)
        half /= 2
    return key.astype(np.uint64)
