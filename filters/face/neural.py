"""The neural "swap" face mode: insightface SCRFD detection + ArcFace identity + inswapper_128.

Same interface as the embedded FaceSwapFilter: `process(frame, t_capture) -> FaceOutput`, `close()`.
The persona's identity embedding is computed once; each frame, the largest detected face is swapped
with inswapper and pasted back (the operator's hair and room stay). When no face is found, the same
lost-face policy as the embedded backend (hold, then the persona's portrait) decides what is shown:
the far end never sees the operator's own face.

The weights are the user's (see `evercall models list`). Every missing or wrong file is reported in one
ModelError before anything of insightface is built: its FaceAnalysis raises a bare ConnectionError or
AssertionError instead. FaceAnalysis is not used at all: it scans a whole folder and routes files by
shape, so inswapper beside the face models crashes it ('INSwapper' object has no attribute 'taskname')
and a 512x512 restorer there would be taken for the recognition model. Each model is instead loaded
by its own path through `insightface.model_zoo.get_model`, which runs the same classes (SCRFD,
ArcFaceONNX, INSwapper) that FaceAnalysis would.

Optional restorer: a GFPGAN-style ONNX model (512x512 crop in and out) sharpens inswapper's 128-px
face. It is slow (DESIGN: enhancers kill real time), so it runs every `restore_every` frames; the
frames between reuse its last correction (restored minus input, in aligned-face coordinates, so it
follows the face as it moves).

Per-frame cost: the swapper runs through an IO binding (`BoundSession`) so its fixed-size input and
output buffers are reused, and on CUDA stay in device memory; the detector runs every `detect_every`
frames and the frames between reuse its last face unless the face region changed a lot.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from engine.errors import ModelError, PersonaError
from engine.face_contract import NO_FACE_MESSAGE, FaceOutput, check_frame, check_photo
from engine.models import MODELS, choose_providers, models_dir as resolve_models_dir, require, session_provider
from filters.face.blend import composite
from filters.face.fallback import HOLD_S, LostFacePolicy
from filters.face.landmarks import ClosesOnExit

REQUIRED_MODELS = ("det_10g", "w600k_r50", "inswapper_128")
RESTORER_MODEL = "gfpgan_1.4"
DET_SIZE = (640, 640)  # the detector input insightface's buffalo_l pack is used at (width, height)
DET_THRESH = 0.5
MIN_FACE_PX = 40  # a persona face smaller than this gives the swapper too little to work with
# GFPGAN's 512x512 crops follow the FFHQ alignment: eye centres, nose tip and mouth corners land here.
DETECT_EVERY = 3  # run the detector on every 3rd frame; the frames between reuse its face
# Mean absolute grey-level change of the last detected face's box beyond which the detector runs anyway:
# the face moved or something covered it, and a stale box would paste the swap in the wrong place.
REDETECT_MAD = 12.0
FFHQ_512 = np.array([[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
                     [201.26117, 371.41043], [313.08905, 371.15118]], np.float32)


def _insightface_model_zoo() -> Any:
    try:
        from insightface import model_zoo
    except ImportError as exc:
        raise ModelError("insightface is not installed: run `pip install --no-deps insightface==2.1` "
                         "(its other needs come with evercall)") from exc
    return model_zoo


def _load(model_zoo: Any, path: Path, providers: list[str], expected: str) -> Any:
    """One insightface model from its own file, checked to be routed as the class we need."""
    with contextlib.redirect_stdout(io.StringIO()):  # INSwapper prints its input shape
        model = model_zoo.get_model(str(path), providers=providers)
    if type(model).__name__ != expected:
        got = type(model).__name__ if model is not None else "nothing"
        raise ModelError(f"insightface takes {path.name} for {got}, not {expected}: replace it with the "
                         f"file `evercall models list` names")
    return model


_ORT_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
                    "tensor(int64)": np.int64, "tensor(int32)": np.int32}


class BoundSession:
    """An onnxruntime session whose `run` goes through an IO binding with buffers kept between calls.

    Why: a plain `session.run` allocates its outputs on every call and, on CUDA, copies inputs in and
    outputs out through fresh buffers. For a model whose inputs and outputs all have static shapes
    (inswapper_128: 1x3x128x128 and 1x512 in, 1x3x128x128 out) the buffers are made once: on the CUDA
    provider as device OrtValues updated in place, on the CPU bound straight from the numpy arrays.
    Anything else (dynamic shapes, unknown types, a binding error) falls back to the plain `run`.
    Every other attribute is the wrapped session's, so `get_providers()` etc. still work.
    """

    def __init__(self, session: Any, use_binding: bool = True) -> None:
        self._session = session
        providers = session.get_providers()
        self.device = "cuda" if providers and providers[0] in ("CUDAExecutionProvider",
                                                              "TensorrtExecutionProvider") else "cpu"
        ins, outs = session.get_inputs(), session.get_outputs()
        static = all(isinstance(d, int) and d > 0 for t in (*ins, *outs) for d in t.shape)
        known = all(t.type in _ORT_NUMPY_TYPES for t in (*ins, *outs))
        self.binding_active = bool(use_binding and static and known)
        self.bound_runs = 0  # calls served through the binding (for tests and stats)
        self._in_specs = {t.name: (tuple(t.shape), _ORT_NUMPY_TYPES.get(t.type)) for t in ins}
        self._out_names = [t.name for t in outs]
        self._binding: Any = None
        self._in_values: dict[str, Any] = {}
        if self.binding_active:
            try:
                self._setup(outs)
            except Exception:  # noqa: BLE001 -- any ORT build/device refusal: keep the plain path
                self.binding_active = False

    def _setup(self, outs: Sequence[Any]) -> None:
        from onnxruntime import OrtValue

        self._binding = self._session.io_binding()
        for name, (shape, dtype) in self._in_specs.items():
            if self.device == "cuda":
                value = OrtValue.ortvalue_from_numpy(np.zeros(shape, dtype), "cuda", 0)
                self._in_values[name] = value
                self._binding.bind_ortvalue_input(name, value)
        for t in outs:
            value = OrtValue.ortvalue_from_shape_and_type(list(t.shape), _ORT_NUMPY_TYPES[t.type], self.device, 0)
            self._binding.bind_ortvalue_output(t.name, value)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def run(self, output_names: Sequence[str] | None, feeds: dict[str, np.ndarray],
            run_options: Any = None) -> list[np.ndarray]:
        """Same contract as InferenceSession.run (numpy in, list of numpy out)."""
        if not self.binding_active or set(feeds) != set(self._in_specs):
            return self._session.run(output_names, feeds, run_options)
        arrays = {}
        for name, x in feeds.items():
            shape, dtype = self._in_specs[name]
            arr = np.ascontiguousarray(x, dtype=dtype)
            if arr.shape != shape:
                return self._session.run(output_names, feeds, run_options)
            arrays[name] = arr
        for name, arr in arrays.items():
            if self.device == "cuda":
                self._in_values[name].update_inplace(arr)  # host -> device copy into the kept buffer
            else:
                self._binding.bind_cpu_input(name, arr)  # no copy: ORT reads the numpy memory
        self._binding.synchronize_inputs()
        self._session.run_with_iobinding(self._binding, run_options)
        self._binding.synchronize_outputs()
        self.bound_runs += 1
        # Copies: the bound output buffers are overwritten by the next call.
        outputs = dict(zip(self._out_names, (np.array(v) for v in self._binding.copy_outputs_to_cpu())))
        return [outputs[n] for n in (output_names or self._out_names)]


class FaceRestorer:
    """Runs a GFPGAN-style restorer on the aligned face every `every` frames and pastes it back."""

    def __init__(self, session: Any, every: int = 1, strength: float = 1.0) -> None:
        if every < 1:
            raise ValueError("every must be >= 1")
        self._session = session
        self._input = session.get_inputs()[0].name
        self.size = int(session.get_inputs()[0].shape[2])
        self.every = every
        self.strength = float(np.clip(strength, 0.0, 1.0))
        self._template = FFHQ_512 * np.float32(self.size / 512)
        self._residual: np.ndarray | None = None
        self._frames = 0
        self.runs = 0  # how many times the network itself ran
        # Paste-back weight in crop coordinates: 1 in the middle, fading to 0 well inside the crop edge.
        s = self.size
        mask = np.zeros((s, s), np.float32)
        cv2.ellipse(mask, (s // 2, int(s * 0.55)), (int(s * 0.36), int(s * 0.42)), 0, 0, 360, 1.0, -1)
        self._mask = cv2.GaussianBlur(mask, (0, 0), s * 0.04)

    def __call__(self, frame: np.ndarray, kps: np.ndarray) -> np.ndarray:
        """`frame` with its face (5 landmarks `kps`, pixels) restored; a new array."""
        m, _ = cv2.estimateAffinePartial2D(np.asarray(kps, np.float32), self._template, method=cv2.LMEDS)
        if m is None:
            return frame
        crop = cv2.warpAffine(frame, m, (self.size, self.size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        if self._residual is None or self._frames % self.every == 0:
            blob = (crop[:, :, ::-1].astype(np.float32) * np.float32(1 / 127.5) - 1).transpose(2, 0, 1)[None]
            out = self._session.run(None, {self._input: np.ascontiguousarray(blob)})[0][0]
            restored = (out.transpose(1, 2, 0)[:, :, ::-1] + 1) * np.float32(127.5)
            self._residual = np.clip(restored, 0, 255) - crop
            self.runs += 1
        self._frames += 1
        patch_crop = np.clip(crop + self._residual, 0, 255).astype(np.uint8)
        return self._paste(frame, patch_crop, m)

    def _paste(self, frame: np.ndarray, crop: np.ndarray, m: np.ndarray) -> np.ndarray:
        inv = cv2.invertAffineTransform(m)
        s = self.size
        corners = np.array([[0, 0, 1], [s, 0, 1], [0, s, 1], [s, s, 1]], np.float64) @ inv.T
        h, w = frame.shape[:2]
        x0, y0 = np.clip(np.floor(corners.min(axis=0)).astype(int), 0, [w, h])
        x1, y1 = np.clip(np.ceil(corners.max(axis=0)).astype(int), 0, [w, h])
        out = frame.copy()
        if x1 - x0 < 2 or y1 - y0 < 2:
            return out
        inv[:, 2] -= (x0, y0)  # warp straight into the box, not the whole frame
        size = (int(x1 - x0), int(y1 - y0))
        patch = cv2.warpAffine(crop, inv, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        alpha = cv2.warpAffine(self._mask, inv, size, flags=cv2.INTER_LINEAR, borderValue=0.0)
        composite(out, patch, alpha * np.float32(self.strength), (int(x0), int(y0), int(x1), int(y1)))
        return out


class InswapperFilter(ClosesOnExit):
    """Replaces the operator's face with the persona's using insightface's inswapper_128.

    One instance is driven by one worker thread at a time. `provider` tells which onnxruntime execution
    provider runs the swapper (TensorRT, CUDA or CPU); `face_box` is the last converted face's box.
    """

    def __init__(self, persona_photo: np.ndarray, models_dir: str | os.PathLike[str] | None = None, *,
                 hold_s: float = HOLD_S, restore_every: int = 0, det_size: tuple[int, int] = DET_SIZE,
                 det_thresh: float = DET_THRESH, providers: Sequence[str] | None = None,
                 detect_every: int = DETECT_EVERY, redetect_mad: float = REDETECT_MAD,
                 io_binding: bool = True) -> None:
        photo = check_photo(persona_photo)
        if restore_every < 0:
            raise ValueError("restore_every must be >= 0 (0 turns the restorer off)")
        if detect_every < 1:
            raise ValueError("detect_every must be >= 1 (1 detects on every frame)")
        folder = resolve_models_dir(models_dir)
        keys = REQUIRED_MODELS + ((RESTORER_MODEL,) if restore_every else ())
        paths = require(keys, folder)  # one ModelError naming every unusable file, before insightface
        model_zoo = _insightface_model_zoo()
        import onnxruntime

        onnxruntime.set_default_logger_severity(3)  # as FaceAnalysis does: ORT warnings are noise here
        chosen = list(providers) if providers else choose_providers()
        self._det = _load(model_zoo, paths["det_10g"], chosen, "SCRFD")
        self._det.prepare(0, input_size=det_size, det_thresh=det_thresh)
        self._rec = _load(model_zoo, paths["w600k_r50"], chosen, "ArcFaceONNX")
        self._swapper = _load(model_zoo, paths["inswapper_128"], chosen, "INSwapper")
        # INSwapper.get calls self.session.run: swapping in the bound session changes only how it runs.
        self._swapper.session = BoundSession(self._swapper.session, use_binding=io_binding)
        self._restorer: FaceRestorer | None = None
        if restore_every:
            from engine.models import open_session

            self._restorer = FaceRestorer(open_session(MODELS[RESTORER_MODEL], folder, chosen), restore_every)

        persona = self._largest_face(photo)
        if persona is None:
            raise PersonaError(NO_FACE_MESSAGE)
        x0, y0, x1, y1 = persona.bbox
        if max(x1 - x0, y1 - y0) < MIN_FACE_PX:
            raise PersonaError(f"the face in the persona photo is only {max(x1 - x0, y1 - y0):.0f} px across: "
                               f"use a photo where the face is at least {MIN_FACE_PX} px wide")
        self._rec.get(photo, persona)  # sets persona.embedding: the identity every frame is given
        self._persona = persona
        self._policy = LostFacePolicy(photo, focus=((x0 + x1) / 2, (y0 + y1) / 2), hold_s=hold_s)
        self.face_box: tuple[int, int, int, int] | None = None
        self.detect_every = detect_every
        self.redetect_mad = float(redetect_mad)
        self._tracked: Any = None  # the last detected Face, reused between detections
        self._tracked_crop: np.ndarray | None = None  # grey face-box crop of the frame it was found in
        self._since_detect = 0
        self.detections = 0  # detector runs on operator frames (for tests and stats)

    @property
    def provider(self) -> str:
        """The execution provider the swapper runs on, e.g. 'CUDAExecutionProvider'."""
        return session_provider(self._swapper.session)

    @property
    def providers(self) -> dict[str, str]:
        """The execution provider of each loaded model, by registry key."""
        found = {"det_10g": self._det.session, "w600k_r50": self._rec.session,
                 "inswapper_128": self._swapper.session}
        if self._restorer is not None:
            found[RESTORER_MODEL] = self._restorer._session
        return {k: session_provider(s) for k, s in found.items()}

    @property
    def swapper_session(self) -> BoundSession:
        """The swapper's (IO-bound) session."""
        return self._swapper.session

    @property
    def restorer(self) -> FaceRestorer | None:
        return self._restorer

    def _largest_face(self, image: np.ndarray) -> Any:
        from insightface.app.common import Face

        boxes, kpss = self._det.detect(image, max_num=0)
        if boxes.shape[0] == 0 or kpss is None:
            return None
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        i = int(np.argmax(areas))
        return Face(bbox=boxes[i, :4], kps=kpss[i], det_score=float(boxes[i, 4]))

    @staticmethod
    def _face_crop(image: np.ndarray, bbox: np.ndarray) -> np.ndarray | None:
        """Grey crop of the face box, shrunk to at most 64 px: a cheap signature of the face region."""
        h, w = image.shape[:2]
        x0, y0 = int(max(np.floor(bbox[0]), 0)), int(max(np.floor(bbox[1]), 0))
        x1, y1 = int(min(np.ceil(bbox[2]), w)), int(min(np.ceil(bbox[3]), h))
        if x1 - x0 < 2 or y1 - y0 < 2:
            return None
        crop = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
        step = max(1, max(x1 - x0, y1 - y0) // 64)
        return crop[::step, ::step].astype(np.int16)

    def _track_or_detect(self, image: np.ndarray) -> Any:
        """The last face while it is fresh and its region still looks the same; else a new detection.

        Why: the detector is the second-largest per-frame cost after the swapper, and a face at 30 fps
        moves little in 2 frames. A big change in the face box (a head turn, a hand in front, a cut to a
        blank frame) forces a detection at once, so a stale box is never used across a real change.
        """
        if self._tracked is not None and self._since_detect < self.detect_every:
            crop = self._face_crop(image, self._tracked.bbox)
            ref = self._tracked_crop
            if (crop is not None and ref is not None and crop.shape == ref.shape
                    and float(np.abs(crop - ref).mean()) <= self.redetect_mad):
                self._since_detect += 1
                return self._tracked
        face = self._largest_face(image)
        self.detections += 1
        self._tracked = face
        self._tracked_crop = None if face is None else self._face_crop(image, face.bbox)
        self._since_detect = 1
        return face

    def process(self, image: np.ndarray, t_capture: float) -> FaceOutput:
        """Convert one BGR frame captured at `t_capture` seconds; the input is not modified."""
        check_frame(image)
        face = self._track_or_detect(image)
        if face is None:
            self.face_box = None
            held, source = self._policy.lost(image.shape[:2], t_capture)
            return FaceOutput(held, False, source)
        out = self._swapper.get(image, face, self._persona, paste_back=True)
        if self._restorer is not None:
            out = self._restorer(out, face.kps)
        self.face_box = tuple(int(round(v)) for v in face.bbox)  # type: ignore[assignment]
        self._policy.converted(out, t_capture)
        return FaceOutput(out.copy(), True, "converted")

    def close(self) -> None:
        """Drop the sessions (GPU memory is freed when onnxruntime releases them)."""
        self._det = self._rec = self._swapper = None
        self._restorer = None


def for_persona(persona, models_dir=None) -> InswapperFilter:
    """The registry's constructor (filters/registry.py): inswapper toward this persona's face."""
    return InswapperFilter(persona.photo, models_dir)
