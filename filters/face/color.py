"""Colour transfer so the persona's face takes on the operator's lighting and white balance.

The persona photo was taken under other light than the operator's room. Matching the mean and spread of
each Lab channel inside the face (Reinhard-style transfer) removes the visible colour seam at the mask
edge and keeps the face consistent when the operator's light changes. Only the face box is converted,
so the cost stays well under a millisecond at webcam sizes.
"""

from __future__ import annotations

import cv2
import numpy as np

# Spread ratios are clamped: a near-greyscale photo has tiny a/b spread, and an unbounded ratio would
# amplify its JPEG noise into coloured blotches; a flat-lit operator would likewise flatten the persona.
MIN_STD_RATIO = 0.5
MAX_STD_RATIO = 2.0
_MIN_PIXELS = 16


def lab_stats(image_bgr: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel Lab mean and standard deviation (each shape (3,)) of the pixels where mask > 0."""
    lab = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2Lab)
    mean, std = cv2.meanStdDev(lab, mask=mask)
    return mean.reshape(3), std.reshape(3)


def transfer_color(patch_bgr: np.ndarray, target_bgr: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Return `patch_bgr` recoloured so its Lab statistics inside `mask` match `target_bgr`'s.

    `patch_bgr` and `target_bgr` are the same region (the face box) of the warped persona and of the
    operator frame; `mask` (uint8, same height/width) marks the skin to compare. With too few masked
    pixels the patch is returned unchanged.
    """
    if patch_bgr.shape != target_bgr.shape or patch_bgr.shape[:2] != mask.shape[:2]:
        raise ValueError("patch, target and mask must cover the same region")
    if cv2.countNonZero(mask) < _MIN_PIXELS:
        return patch_bgr
    src_lab = cv2.cvtColor(patch_bgr, cv2.COLOR_BGR2Lab)
    src_mean, src_std = cv2.meanStdDev(src_lab, mask=mask)
    dst_mean, dst_std = lab_stats(target_bgr, mask)
    src_mean, src_std = src_mean.reshape(3), src_std.reshape(3)
    ratio = np.clip(dst_std / np.maximum(src_std, 1e-3), MIN_STD_RATIO, MAX_STD_RATIO)
    # out = (x - src_mean) * ratio + dst_mean as one 3x4 affine colour map; cv2.transform saturates to uint8.
    offset = dst_mean - src_mean * ratio
    matrix = np.hstack([np.diag(ratio), offset[:, None]]).astype(np.float32)
    out = cv2.transform(src_lab, matrix)
    return cv2.cvtColor(out, cv2.COLOR_Lab2BGR)
