"""Key-derived geometry of the mark and the linear grid operators shared by embedder and detector.

Everything is defined on a coarse canonical grid (40 x 30 cells, one cell per 16 x 16 macroblock at
640 x 480): the detector area-averages luma onto this grid whatever the frame size, so a rescaled copy
lands on the same cells. Each coded bit owns a scattered set of cells with +/- signs; its statistic is the
signed mean of the high-passed cell values. The layout comes from SHAKE-256 of the key, not from NumPy's
generators, so a mark made today stays decodable whatever NumPy version reads it later.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import cv2
import numpy as np
import scipy.sparse

from filters.watermark.coding import CODED_BITS

GRID_W = 40
GRID_H = 30
HIGHPASS_SIGMA = 1.5  # in cells; removes the slowly varying part of the image the mark does not need
SUB = 4  # fine-grid cells per canonical cell, per axis
STEP = 4.0  # quantiser step (luma levels, in cell-statistic units): sets strength and PSNR



def _stream(key: bytes, label: str, nbytes: int) -> bytes:
    return hashlib.shake_256(b"evercall-wm-v1|" + label.encode() + b"|" + key).digest(nbytes)


def _uniform(key: bytes, label: str, n: int) -> np.ndarray:
    """n deterministic uniforms in [0, 1) from the key."""
    raw = np.frombuffer(_stream(key, label, 8 * n), dtype=">u8").astype(np.float64)
    return raw / 2.0**64


def _gauss_matrix(n: int, sigma: float) -> np.ndarray:
    """(n, n) Gaussian blur with reflect-101 borders, as a matrix acting on columns."""
    radius = int(np.ceil(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    out = np.zeros((n, n))
    for i in range(n):
        for k, w in zip(range(-radius, radius + 1), taps):
            j = i + k
            while j < 0 or j >= n:  # reflect-101: -1 -> 1, n -> n - 2
                j = -j if j < 0 else 2 * (n - 1) - j
            out[i, j] += w
    return out


@dataclass(frozen=True)
class Layout:
    """Cell-to-bit assignment, cell signs and quantiser dithers for one key."""

    bit_of: np.ndarray  # (GRID_H * GRID_W,) coded-bit index of each cell
    sign: np.ndarray  # (GRID_H * GRID_W,) +1/-1 per cell
    count: np.ndarray  # (CODED_BITS,) cells per bit
    dither: np.ndarray  # (CODED_BITS,) lattice offset per bit, in [0, STEP)
    spread: np.ndarray  # (GRID_H * GRID_W, CODED_BITS) signed incidence matrix, cells x bits
    gather: scipy.sparse.csr_matrix  # spread.T as a sparse matrix: a few microseconds per frame, not 0.2 ms
    blur_y: np.ndarray  # (GRID_H, GRID_H)
    blur_x: np.ndarray  # (GRID_W, GRID_W)

    def highpass(self, grid: np.ndarray) -> np.ndarray:
        """Grid minus its Gaussian blur; works on (H, W) or stacks (..., H, W)."""
        return grid - self.blur_y @ grid @ self.blur_x.T

    def statistics(self, grid: np.ndarray) -> np.ndarray:
        """Per-coded-bit statistic: signed mean of the high-passed grid over the bit's cells.

        (H, W) gives (CODED_BITS,); a stack (..., H, W) gives (..., CODED_BITS).
        """
        flat = self.highpass(grid).reshape(-1, GRID_H * GRID_W)
        stats = (self.gather @ flat.T).T / self.count
        return stats.reshape(*grid.shape[:-2], CODED_BITS)

    def soft_bits(self, stats: np.ndarray) -> np.ndarray:
        """+1 where a statistic sits on the bit-0 lattice, -1 on the bit-1 lattice, in between otherwise."""
        return np.cos((2.0 * np.pi / STEP) * (stats - self.dither))


@functools.lru_cache(maxsize=8)
def layout_for(key: bytes) -> Layout:
    """The layout a key defines (cached: building it costs a few milliseconds)."""
    cells = GRID_W * GRID_H
    order = np.argsort(_uniform(key, "cells", cells), kind="stable")
    bit_of = np.empty(cells, dtype=np.int64)
    bit_of[order] = np.arange(cells) % CODED_BITS
    # Alternate signs within each bit's cells so a brightness offset cancels in its statistic.
    rank = np.empty(cells, dtype=np.int64)
    rank[order] = np.arange(cells) // CODED_BITS
    flip = _stream(key, "signs", CODED_BITS)
    sign = np.where((rank + np.frombuffer(flip, np.uint8)[bit_of]) % 2 == 0, 1.0, -1.0)
    count = np.bincount(bit_of, minlength=CODED_BITS).astype(np.float64)
    spread = np.zeros((cells, CODED_BITS))
    spread[np.arange(cells), bit_of] = sign
    return Layout(
        bit_of=bit_of,
        sign=sign,
        count=count,
        dither=_uniform(key, "dither", CODED_BITS) * STEP,
        spread=spread,
        gather=scipy.sparse.csr_matrix(spread.T),
        blur_y=_gauss_matrix(GRID_H, HIGHPASS_SIGMA),
        blur_x=_gauss_matrix(GRID_W, HIGHPASS_SIGMA),
    )


def fine_luma(image: np.ndarray) -> np.ndarray:
    """Area-averaged luma of a BGR (or grayscale) frame on the fine grid (SUB x the canonical grid), float32.

    The detector's tone-curve search works here: undoing a gamma on 4 x 4-pixel means is close to undoing it
    per pixel, at 1/16 of the cost.
    """
    luma = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    return cv2.resize(luma.astype(np.float32), (GRID_W * SUB, GRID_H * SUB), interpolation=cv2.INTER_AREA)


def coarse(fine: np.ndarray) -> np.ndarray:
    """Fine grid (or a stack of them) to the canonical grid by SUB x SUB means, as float64."""
    if fine.ndim == 2:  # an exact SUB x SUB area resize is a block mean, and cv2 does it fastest
        return cv2.resize(fine, (GRID_W, GRID_H), interpolation=cv2.INTER_AREA).astype(np.float64)
    return np.stack([coarse(f) for f in fine.reshape(-1, *fine.shape[-2:])]).reshape(*fine.shape[:-2], GRID_H, GRID_W)


def _axis_response(cells: int, pixels: int) -> np.ndarray:
    eye = np.eye(cells, dtype=np.float32)
    up = cv2.resize(eye, (pixels, cells), interpolation=cv2.INTER_LINEAR)
    fine = cv2.resize(up, (cells * SUB, cells), interpolation=cv2.INTER_AREA)
    return fine.reshape(cells, cells, SUB).mean(axis=2, dtype=np.float64)


@functools.lru_cache(maxsize=16)
def resample_response(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """How a grid-level change, upsampled to (height, width) and measured as `coarse(fine_luma(frame))`, lands on the grid.

    Returns (ry, rx) with ry[k] / rx[k] the grid response to a unit impulse in row / column k, measured with
    the very cv2 calls the embedder and detector use (all of them separable), so the model is exact.
    """
    return _axis_response(GRID_H, height), _axis_response(GRID_W, width)
