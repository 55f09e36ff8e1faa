"""Face compositing with torch, so a frame stays on the GPU between the warp and the blend.

The CPU path (filters/face/warp.py, filters/face/blend.py) costs a few milliseconds per step, but on a GPU
pipeline each step would otherwise copy the frame to host memory and back. `TorchCompositor` does the
same two operations (dense remap, alpha composite) on whatever device torch has: CUDA when present, CPU
otherwise, where the tests check it against the OpenCV results.

Frames are kept as uint8 (H, W, 3) tensors, the same layout as the numpy frames, so `to_device` /
`to_numpy` are plain copies; the channel-first float form grid_sample needs is made only inside `warp`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# cv2.remap quantises the sub-pixel position to 1/32 pixel (INTER_BITS = 5); doing the same here keeps the
# torch warp within a grey level of OpenCV's even across sharp edges.
OPENCV_SUBPIXEL_BITS = 5


def default_device() -> torch.device:
    """CUDA when torch sees a GPU, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class TorchCompositor:
    """Warp and alpha-blend uint8 (H, W, 3) frames on one torch device."""

    def __init__(self, device: str | torch.device | None = None, *,
                 subpixel_bits: int | None = OPENCV_SUBPIXEL_BITS) -> None:
        self.device = torch.device(device) if device is not None else default_device()
        # Half precision halves the bandwidth of the blend on a GPU; CPU half kernels are slow or missing.
        self.blend_dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.subpixel_bits = subpixel_bits

    # -- layout ----------------------------------------------------------------------------------------

    def to_device(self, array: np.ndarray) -> torch.Tensor:
        """A numpy array (a uint8 HxWx3 frame, a float map or mask) as a tensor on this device, same layout."""
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if self.device.type == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor.to(self.device)

    @staticmethod
    def to_numpy(tensor: torch.Tensor) -> np.ndarray:
        """A tensor back as a host numpy array, same layout and dtype (syncs the device)."""
        return tensor.detach().to("cpu").contiguous().numpy()

    # -- warp ------------------------------------------------------------------------------------------

    def maps_from_affines(self, ids: torch.Tensor | np.ndarray, mats: torch.Tensor | np.ndarray,
                          origin: tuple[int, int] = (0, 0)) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pixel source maps from a triangle id image and per-triangle affines, built on the device.

        `ids` (h, w) int: triangle index per pixel, -1 outside the mesh; `mats` (T, 3, 2) as warp.py's
        `_affines` gives (src = [x, y, 1] @ M); `origin` is the (x0, y0) of the id image in the frame.
        Pixels outside the mesh map to -1 (as warp_face does); with grid_sample's border padding they take
        the source's edge pixel, as cv2.remap's BORDER_REPLICATE does.
        """
        ids_t = torch.as_tensor(ids, device=self.device).long()
        m = torch.as_tensor(mats, device=self.device, dtype=torch.float32).reshape(-1, 6)
        h, w = ids_t.shape
        inside = ids_t >= 0
        c = m[ids_t.clamp(min=0)]  # (h, w, 6): M[0,0], M[0,1], M[1,0], M[1,1], M[2,0], M[2,1]
        # float64 for the absolute coordinates: float32 loses sub-pixel precision in large frames.
        gx = (torch.arange(w, device=self.device, dtype=torch.float64) + origin[0])[None, :]
        gy = (torch.arange(h, device=self.device, dtype=torch.float64) + origin[1])[:, None]
        c = c.double()
        map_x = gx * c[..., 0] + gy * c[..., 2] + c[..., 4]
        map_y = gx * c[..., 1] + gy * c[..., 3] + c[..., 5]
        outside = torch.tensor(-1.0, device=self.device, dtype=torch.float64)
        return (torch.where(inside, map_x, outside).float(), torch.where(inside, map_y, outside).float())

    def warp(self, src: torch.Tensor, map_x: torch.Tensor | np.ndarray,
             map_y: torch.Tensor | np.ndarray) -> torch.Tensor:
        """cv2.remap(src, map_x, map_y, INTER_LINEAR, BORDER_REPLICATE) on the device: uint8 (h, w, 3).

        `src` is a uint8 (H, W, 3) tensor; the maps are (h, w) source coordinates in pixels.
        """
        if src.ndim != 3:
            raise ValueError("expected an (H, W, C) image tensor")
        mx = torch.as_tensor(map_x, device=self.device, dtype=torch.float32)
        my = torch.as_tensor(map_y, device=self.device, dtype=torch.float32)
        if mx.shape != my.shape or mx.ndim != 2:
            raise ValueError("map_x and map_y must be equal (h, w) arrays")
        src_h, src_w = src.shape[:2]
        if self.subpixel_bits is not None:
            scale = float(1 << self.subpixel_bits)
            mx = torch.round(mx * scale) / scale
            my = torch.round(my * scale) / scale
        # align_corners=True: -1 and 1 are the centres of the first and last pixels, so pixel i is
        # 2 i / (size - 1) - 1 (a 1-pixel dimension maps everything to its centre).
        gx = mx * (2.0 / max(src_w - 1, 1)) - 1.0
        gy = my * (2.0 / max(src_h - 1, 1)) - 1.0
        grid = torch.stack((gx, gy), dim=-1)[None]  # (1, h, w, 2)
        image = src.permute(2, 0, 1)[None].float()  # (1, C, H, W)
        out = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)
        return out[0].permute(1, 2, 0).round_().clamp_(0, 255).to(torch.uint8).contiguous()

    # -- blend -----------------------------------------------------------------------------------------

    def blend(self, frame: torch.Tensor, patch: torch.Tensor, alpha: torch.Tensor | np.ndarray,
              box: tuple[int, int, int, int]) -> torch.Tensor:
        """Blend `patch` into `frame[box]` in place with per-pixel weight `alpha` (1 = patch), as
        blend.composite does; returns `frame`. Float16 on CUDA, float32 on the CPU.
        """
        x0, y0, x1, y1 = box
        roi = frame[y0:y1, x0:x1]
        a = torch.as_tensor(alpha, device=self.device).to(self.blend_dtype)
        if roi.shape != patch.shape or roi.shape[:2] != a.shape:
            raise ValueError("patch and alpha must match the box")
        a = a[..., None]
        p = patch.to(self.blend_dtype)
        r = roi.to(self.blend_dtype)
        mixed = r + (p - r) * a  # one multiply: fewer rounding steps in float16 than a*p + (1-a)*r
        frame[y0:y1, x0:x1] = mixed.round_().clamp_(0, 255).to(torch.uint8)
        return frame
