"""The demo operator clip: scikit-image's astronaut, animated with gentle head motion and a mouth that opens
with its own speech, encoded as H.264 + AAC in MP4."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from engine.errors import MediaError
from calls.demo.face import _INNER_LOWER, _INNER_UPPER, _N_MESH, _OUTER_LOWER, _mesher, _oval_rings
from calls.demo.voice import operator_audio

CLIP_WIDTH, CLIP_HEIGHT, CLIP_FPS = 640, 480, 30
CLIP_AUDIO_RATE = 48000

# ----------------------------------------------------------------------------------------------------------
# the operator clip


def operator_still() -> np.ndarray:
    """The operator's rest frame: scikit-image's astronaut photo framed like a 640x480 webcam picture."""
    from skimage import data

    photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)  # 512x512, face in the upper half
    scale = CLIP_WIDTH / photo.shape[1]
    big = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(big[:CLIP_HEIGHT, :CLIP_WIDTH])


def mouth_envelope(samples: np.ndarray, rate: int, fps: int, n_frames: int) -> np.ndarray:
    """How far open the mouth is in each video frame (0..1), from the loudness of the speech around it."""
    hop = rate / fps
    half = int(0.025 * rate)
    sq = np.concatenate([[0.0], np.cumsum(np.square(samples, dtype=np.float64))])
    centres = (np.arange(n_frames) + 0.5) * hop
    lo = np.clip(centres.astype(int) - half, 0, len(samples))
    hi = np.clip(centres.astype(int) + half, 0, len(samples))
    rms = np.sqrt((sq[hi] - sq[lo]) / np.maximum(hi - lo, 1))
    voiced = rms[rms > 0.02 * rms.max()] if rms.max() > 0 else rms
    ref = np.percentile(voiced, 90) if voiced.size else 1.0
    level = np.clip(rms / max(ref, 1e-6), 0.0, 1.0)
    level = np.where(level < 0.08, 0.0, level) ** 0.7
    # Jaws open fast and close a little slower than the sound stops.
    out = np.zeros(n_frames)
    for i, v in enumerate(level):
        prev = out[i - 1] if i else 0.0
        out[i] = v if v > prev else prev + (v - prev) * 0.55
    return out


def _head_motion(t: float) -> tuple[float, float, float, float]:
    """Gentle, non-repeating head motion at time t: (rotation degrees, scale, dx, dy) in pixels."""
    rot = 3.0 * np.sin(2 * np.pi * 0.23 * t) + 1.2 * np.sin(2 * np.pi * 0.61 * t + 1.0)
    scale = 1.0 + 0.025 * np.sin(2 * np.pi * 0.13 * t + 0.5)
    dx = 9.0 * np.sin(2 * np.pi * 0.17 * t + 1.3) + 2.0 * np.sin(2 * np.pi * 0.53 * t)
    dy = 4.0 * np.sin(2 * np.pi * 0.29 * t + 0.2)
    return float(rot), float(scale), float(dx), float(dy)


class _Animator:
    """Moves the operator's head and opens the mouth of the still by one piecewise-affine warp a frame.

    The control points are the face mesh (moved rigidly by the head motion, lower lip and jaw dropped by
    the mouth opening), two rings around the head (moved fully and half) and the frame border (fixed),
    so the head moves over a still room.
    """

    _FIELD_STEP = 2

    def __init__(self, still: np.ndarray, mesh: np.ndarray) -> None:
        from filters.face.landmarks import face_oval_indices
        from filters.face.warp import triangulate

        self.still = still
        h, w = still.shape[:2]
        oval = face_oval_indices()
        rings = [_oval_rings(mesh, oval, (k,)) for k in (1.4, 2.3)]
        inside = [np.all((r > 6) & (r < (w - 7, h - 7)), axis=1) for r in rings]
        g_x, g_y = np.linspace(0, w - 1, 9), np.linspace(0, h - 1, 7)
        border = np.array([(x, y) for x in g_x for y in g_y
                           if x in (g_x[0], g_x[-1]) or y in (g_y[0], g_y[-1])])
        self.src = np.vstack([mesh, rings[0][inside[0]], rings[1][inside[1]], border]).astype(np.float32)
        n0, n1 = int(inside[0].sum()), int(inside[1].sum())
        self.motion_w = np.concatenate([np.ones(_N_MESH + n0), np.full(n1, 0.5), np.zeros(len(border))])
        self.tri = triangulate(self.src)

        self.mouth_c = (mesh[13] + mesh[14]) / 2
        self.mouth_w = float(np.linalg.norm(mesh[308] - mesh[78]))
        chin, face_w = mesh[152], float(np.ptp(mesh[oval][:, 0]))
        self.pivot = chin + (0.0, 0.6 * (chin[1] - mesh[10][1]))  # the neck, below the chin
        # How much each mesh point follows the jaw: the lower lip fully, the chin fully, the cheeks less
        # the further they are from the middle, nothing above the mouth corners.
        drop = np.zeros(len(self.src))
        below = np.clip((mesh[:, 1] - self.mouth_c[1]) / (0.25 * (chin[1] - self.mouth_c[1])), 0, 1)
        across = np.clip(1.0 - ((mesh[:, 0] - chin[0]) / (0.55 * face_w)) ** 2, 0, 1)
        drop[:_N_MESH] = below * across
        drop[_OUTER_LOWER[1:-1] + _INNER_LOWER[1:-1]] = 1.0  # by index: a smile lifts the corners
        drop[[61, 291, 78, 308]] = 0.3
        self.drop = drop
        # The interior colours: teeth from the brightest part of the rest mouth, dark for the throat.
        poly = np.round(mesh[_INNER_UPPER + _INNER_LOWER[::-1]]).astype(np.int32)
        m = np.zeros(still.shape[:2], np.uint8)
        cv2.fillPoly(m, [poly], 255)
        inner = still[m > 0].astype(np.float32)
        if len(inner) >= 10:
            bright = inner[inner.sum(1) >= np.percentile(inner.sum(1), 60)]
            self.teeth = np.clip(np.median(bright, axis=0) * 0.95, 150, 235)
        else:
            self.teeth = np.array([200.0, 205.0, 215.0])
        self.rest_gap = float(np.linalg.norm(mesh[13] - mesh[14]))
        f = self._FIELD_STEP
        gy, gx = np.mgrid[0:h // f, 0:w // f].astype(np.float32)
        self.grid = np.dstack([gx, gy])  # identity field in low-res pixel units

    def frame(self, t: float, opening: float) -> tuple[np.ndarray, np.ndarray]:
        """The frame at time t with the mouth open by `opening` (0..1); returns (image, moved mesh)."""
        from filters.face.warp import warp_face

        rot, scale, dx, dy = _head_motion(t)
        a = np.radians(rot)
        m = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        moved = (self.src - self.pivot) @ m.T + self.pivot + (dx, dy)
        dst = self.src + self.motion_w[:, None] * (moved - self.src)
        jaw = opening * 0.3 * self.mouth_w
        down = np.array([-np.sin(a), np.cos(a)])  # "down" in the turned head
        dst = dst + (self.drop * jaw)[:, None] * down
        dst = dst.astype(np.float32)

        # The warp is computed as a field of source coordinates at half resolution (warping a coordinate
        # grid: exact per triangle, smooth between) and applied at full resolution in one remap: a
        # quarter of the per-pixel work of warping the frame itself.
        h, w = self.still.shape[:2]
        f = self._FIELD_STEP
        c = (f - 1) / 2  # low-res pixel u is centred on full-res coordinate f * u + c
        field, mask, (x0, y0, x1, y1) = warp_face(self.grid, (self.src - c) / f, (dst - c) / f, self.tri,
                                                  (h // f, w // f))
        coords = self.grid.copy()
        sel = mask > 0
        coords[y0:y1, x0:x1][sel] = field[sel]
        coords = cv2.resize(coords * f + c, (w, h), interpolation=cv2.INTER_LINEAR)
        out = cv2.remap(self.still, coords[..., 0], coords[..., 1], cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
        if jaw > 0.5:
            self._paint_mouth(out, dst, jaw)
        return out, dst[:_N_MESH]

    def _paint_mouth(self, image: np.ndarray, pts: np.ndarray, jaw: float) -> None:
        """Fill the opened lips with a dark mouth and a band of upper teeth, anti-aliased."""
        upper, lower = pts[_INNER_UPPER], pts[_INNER_LOWER]
        poly = np.vstack([upper, lower[::-1]])
        x0, y0 = np.floor(poly.min(0)).astype(int) - 3
        x1, y1 = np.ceil(poly.max(0)).astype(int) + 4
        h, w = image.shape[:2]
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 - x0 < 3 or y1 - y0 < 3:
            return
        off = np.array([x0, y0], np.float32)

        def fill(p: np.ndarray) -> np.ndarray:
            mask = np.zeros((y1 - y0, x1 - x0), np.float32)
            cv2.fillPoly(mask, [np.round((p - off) * 4).astype(np.int32)], 1.0, lineType=cv2.LINE_AA, shift=2)
            return cv2.GaussianBlur(mask, (0, 0), 0.7)

        mouth = fill(poly)
        teeth_h = self.rest_gap + 0.12 * jaw
        teeth = fill(np.vstack([upper, (upper + (0, teeth_h))[::-1]])) * mouth
        xs = np.arange(x0, x1, dtype=np.float32)[None, :]
        centre = np.clip(1.0 - ((xs - upper[:, 0].mean()) / (0.5 * self.mouth_w)) ** 2, 0, 1) ** 0.5
        teeth *= centre
        ys = np.arange(y0, y1, dtype=np.float32)[:, None]
        depth = np.clip((ys - upper[:, 1].mean()) / max(jaw, 1.0), 0, 1)
        throat = np.array([48, 42, 112], np.float32) * (1.0 - 0.6 * depth[..., None])  # dark red, deeper
        region = image[y0:y1, x0:x1].astype(np.float32)
        alpha = min(1.0, jaw / 4.0)  # small openings blend in from the stretched rest mouth
        inside = throat * (1 - teeth[..., None]) + self.teeth * teeth[..., None]
        region = region * (1 - alpha * mouth[..., None]) + inside * (alpha * mouth[..., None])
        image[y0:y1, x0:x1] = np.clip(region, 0, 255).astype(np.uint8)


def write_operator_clip(path: Path, still: np.ndarray) -> None:
    """Animate the still to its own speech and encode H.264 + AAC (Opus if AAC is missing) in MP4."""
    import av

    audio = operator_audio(CLIP_AUDIO_RATE)
    per_frame = CLIP_AUDIO_RATE // CLIP_FPS
    n_frames = -(-len(audio) // per_frame)
    audio = np.pad(audio, (0, n_frames * per_frame - len(audio)))  # sound ends with the last frame
    opening = mouth_envelope(audio, CLIP_AUDIO_RATE, CLIP_FPS, n_frames)

    with _mesher() as mesh:
        rest = mesh(still)
    if rest is None:
        raise MediaError("the demo operator photo shows no face to MediaPipe: check the mediapipe install")
    animator = _Animator(still, rest)

    audio_codec = "aac" if "aac" in av.codecs_available else "libopus"
    with av.open(str(path), mode="w", format="mp4") as container:
        video = container.add_stream("libx264", rate=CLIP_FPS)
        video.width, video.height, video.pix_fmt = CLIP_WIDTH, CLIP_HEIGHT, "yuv420p"
        video.options = {"crf": "20", "preset": "superfast"}
        sound = container.add_stream(audio_codec, rate=CLIP_AUDIO_RATE)
        sound.layout = "mono"
        chunk = sound.codec_context.frame_size or 1024
        sent = 0
        for i in range(n_frames):
            image, _ = animator.frame(i / CLIP_FPS, float(opening[i]))
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = i
            frame.time_base = Fraction(1, CLIP_FPS)
            for packet in video.encode(frame):
                container.mux(packet)
            # Keep audio level with the video so the muxer interleaves without buffering it all.
            until = min((i + 1) * per_frame, len(audio))
            while sent + chunk <= until or (i == n_frames - 1 and sent < len(audio)):
                part = audio[sent:sent + chunk]
                aframe = av.AudioFrame.from_ndarray(part[None, :].astype(np.float32), format="fltp",
                                                    layout="mono")
                aframe.sample_rate = CLIP_AUDIO_RATE
                aframe.pts = sent
                aframe.time_base = Fraction(1, CLIP_AUDIO_RATE)
                for packet in sound.encode(aframe):
                    container.mux(packet)
                sent += len(part)
        for packet in video.encode(None):
            container.mux(packet)
        for packet in sound.encode(None):
            container.mux(packet)

