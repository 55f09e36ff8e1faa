"""Embedding: spread-transform dither modulation of coarse luma statistics, one small add per frame.

Why this scheme: a plain additive spread-spectrum pattern at a PSNR of about 42 dB is drowned by the
picture itself (a still background correlates with the pattern the same way in every frame, so averaging a
second of frames does not help). Instead, each coded bit's statistic (a signed mean of high-passed cell
luma, see `layout`) is measured on the frame and nudged onto the nearest point of a dithered lattice whose
offset encodes the bit. The picture no longer interferes at all, the change per cell is bounded by half a
lattice step whatever the content, and the work per frame happens on a 40 x 30 grid; only the final
upsample-and-add touches full-resolution pixels.

Masking: a faint 16-pixel mottle is what could give the mark away, and only on flat areas (a plain wall, a
smooth synthetic background). Each bit's statistic is a mean over about six scattered cells, so the change
can be shared unevenly: textured cells (hair, edges, fabric) take up to 8 times the share of flat ones.
That roughly halves the mark on flat areas for the same robustness; it also lands more of the mark where
codecs spend their bits.
"""

from __future__ import annotations

import functools
import hashlib

import cv2
import numpy as np

from filters.watermark.coding import CODED_BITS, PAYLOAD_BYTES, conv_encode, crc_salt, info_bits
from filters.watermark.layout import (
    GRID_H,
    GRID_W,
    STEP,
    Layout,
    coarse,
    fine_luma,
    layout_for,
    resample_response,
)

DEFAULT_KEY = b"evercall/provenance/v1"
# Safety net: typical frames land at 41.5-43 dB; never let one drop below 41 dB (the target is 40).
MAX_MSE = 255.0**2 / 10 ** (41.0 / 10)
TEXTURE_FULL = 6.0  # luma std (levels, over a cell's 4x4-pixel means) at which a cell takes a full share
WEIGHT_MIN, WEIGHT_MAX = 0.2, 1.6  # share of a flat cell and of a busy one
REFINE_STEPS = 2  # uneven shares perturb the cross-talk the solver removes; two passes settle it to ~1e-3


def id_hash(kind: str, value: str) -> bytes:
    """4-byte SHA-256 prefix of a domain-tagged id: short enough to fit, enough to check a claimed id."""
    return hashlib.sha256(f"evercall-{kind}:{value}".encode()).digest()[:4]


def make_payload(persona_id: str, call_id: str) -> bytes:
    """8-byte payload: 4 bytes of the persona id hash, then 4 bytes of the call id hash."""
    return id_hash("persona", persona_id) + id_hash("call", call_id)


@functools.lru_cache(maxsize=32)
def _solver(key: bytes, height: int, width: int) -> np.ndarray:
    """Matrix mapping wanted per-bit statistic changes to per-bit cell amplitudes at this frame size.

    The upsample/area-average round trip and the high-pass smear each bit's cells onto neighbours that
    belong to other bits; inverting the exact (CODED_BITS x CODED_BITS) response removes that cross-talk.
    """
    lay = layout_for(key)
    ry, rx = resample_response(height, width)
    unit = lay.spread.T.reshape(CODED_BITS, GRID_H, GRID_W)
    seen = ry.T @ unit @ rx  # what the detector's grid sees for each bit's unit pattern
    response = lay.statistics(seen).T  # response[i, j]: statistic i per unit amplitude of bit j
    return np.linalg.inv(response)


class WatermarkEmbedder:
    """Marks every outgoing frame with the same keyed payload, so any one-second stretch identifies the call."""

    def __init__(self, payload: bytes, key: bytes = DEFAULT_KEY) -> None:
        if len(payload) != PAYLOAD_BYTES:
            raise ValueError(f"payload must be {PAYLOAD_BYTES} bytes (see make_payload), got {len(payload)}")
        self.payload = bytes(payload)
        self.key = bytes(key)
        self._layout: Layout = layout_for(self.key)
        self._codeword = conv_encode(info_bits(self.payload, crc_salt(self.key)))
        # Lattice offset per coded bit: the key's dither, plus half a step for a coded 1.
        self._offset = self._layout.dither + self._codeword * (STEP / 2.0)

    def grid_delta(self, image_bgr: np.ndarray) -> np.ndarray:
        """The (GRID_H, GRID_W) luma change that moves every bit statistic onto its lattice point."""
        height, width = image_bgr.shape[:2]
        lay = self._layout
        fine = fine_luma(image_bgr)
        grid = coarse(fine)
        stats = lay.statistics(grid)
        need = np.round((stats - self._offset) / STEP) * STEP + self._offset - stats
        texture = np.sqrt(np.maximum(coarse(fine * fine) - grid * grid, 0.0))
        weight = np.clip(texture / TEXTURE_FULL, WEIGHT_MIN, WEIGHT_MAX)
        mean_weight = np.bincount(lay.bit_of, weights=weight.reshape(-1), minlength=CODED_BITS) / lay.count
        solver = _solver(self.key, height, width)
        ry, rx = resample_response(height, width)

        def cells(amplitude: np.ndarray) -> np.ndarray:
            return weight * (lay.gather.T @ amplitude).reshape(GRID_H, GRID_W)

        amplitude = solver @ need / mean_weight
        for _ in range(REFINE_STEPS):
            realized = lay.statistics(ry.T @ cells(amplitude) @ rx)
            amplitude += solver @ (need - realized) / mean_weight
        return cells(amplitude).astype(np.float32)

    def mark(self, image_bgr: np.ndarray, frame_index: int) -> np.ndarray:
        """A marked copy of a uint8 BGR (or grayscale) frame.

        The mark depends only on the payload, key and picture, not on `frame_index`: detection needs no
        frame sync and is unaffected by dropped or repeated frames. The index is accepted so callers can
        pass it uniformly with other per-frame filters.
        """
        del frame_index
        if image_bgr.dtype != np.uint8 or not (image_bgr.ndim == 2 or (image_bgr.ndim == 3 and image_bgr.shape[2] == 3)):
            raise TypeError(f"expected a uint8 BGR or gray image, got {image_bgr.dtype} {image_bgr.shape}")
        height, width = image_bgr.shape[:2]
        if height < GRID_H or width < GRID_W:
            raise ValueError(f"frame {width}x{height} is smaller than the {GRID_W}x{GRID_H} mark grid")
        delta = cv2.resize(self.grid_delta(image_bgr), (width, height), interpolation=cv2.INTER_LINEAR)
        flat = delta.reshape(-1)
        mse = float(flat @ flat) / flat.size
        if mse > MAX_MSE:
            delta *= np.float32(np.sqrt(MAX_MSE / mse))
        if image_bgr.ndim == 3:
            delta = cv2.merge([delta, delta, delta])
        # Saturating add with rounding, in one pass (several times faster than int16 numpy arithmetic).
        return cv2.add(image_bgr, delta, dtype=cv2.CV_8U)
