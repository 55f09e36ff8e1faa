"""The model runtime: which model files the neural backends need, where they live, whether they fit.

Weights are never downloaded: the user brings them (licences differ, several are non-commercial). This
module knows each file's expected ONNX signature so a wrong or truncated file is reported as one line
that says what to do, instead of a shape error deep inside a call. It also picks the execution
provider (TensorRT, then CUDA, then CPU) and reports which one a session really got.

Folder resolution: an explicit `--models-dir`, else `$EVERCALL_MODELS`, else `<evercall home>/models`.

Signatures. Each tensor is checked by position. A name of None means "any name": insightface routes
the face models by input/output *shape* (9 outputs = SCRFD detector, square >=112 input = ArcFace, two
inputs at 128x128 = inswapper) and reads inputs by position, so exported files with other tensor names
work. A dimension is an int (must be exactly that), a string (a dynamic axis: any size, symbolic or
fixed) or None (anything). Voice models are not produced by one canonical exporter either; their names
are documented but only rank and fixed sizes are checked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from engine.errors import ModelError
from engine.home import default_home

MODELS_ENV = "EVERCALL_MODELS"
# Preferred execution providers, best first; anything else onnxruntime offers is not used.
PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")

Dim = int | str | None


@dataclass(frozen=True)
class TensorSpec:
    """One expected graph input or output: position-matched, optionally name-matched."""

    name: str | None
    shape: tuple[Dim, ...]
    dtype: str = "float32"

    def describe(self) -> str:
        return f"{self.name or '*'}[{_dims(self.shape)}]"


@dataclass(frozen=True)
class ModelSpec:
    """A model file a backend can use, with what it must look like and where a user gets it."""

    key: str
    file_names: tuple[str, ...]  # the first is the name we suggest; the others are accepted as found
    task: str
    backend: str  # "face" or "voice"
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    licence: str
    source: str  # a plain sentence: who publishes it and under which name
    size_hint: str
    required: bool = True  # required for its backend (optional ones are extras such as the restorer)
    # Outputs may carry an extra leading batch axis of 1 (SCRFD exports come both ways).
    batched_outputs_ok: bool = False
    # Extra structural check on the loaded onnx.ModelProto; returns a problem text or None.
    extra_check: Callable[[object], str | None] | None = field(default=None, compare=False, repr=False)

    @property
    def file_name(self) -> str:
        return self.file_names[0]

    def signature(self) -> str:
        ins = ", ".join(t.describe() for t in self.inputs)
        outs = ", ".join(t.describe() for t in self.outputs)
        return f"({ins}) -> ({outs})"


def _inswapper_emap(model: object) -> str | None:
    """insightface's INSwapper reads the identity map from the graph's last initializer (512x512)."""
    inits = model.graph.initializer  # type: ignore[attr-defined]
    if not inits or tuple(inits[-1].dims) != (512, 512):
        return "its last initializer is not the 512x512 identity map ('emap') that inswapper needs"
    return None


_DET_OUT = tuple(TensorSpec(None, ("n", width)) for width in (1, 1, 1, 4, 4, 4, 10, 10, 10))
_INSIGHTFACE_NC = ("non-commercial research use only (InsightFace pretrained-model licence); "
                   "ask InsightFace for a commercial licence")

MODELS: dict[str, ModelSpec] = {
    spec.key: spec
    for spec in (
        ModelSpec(
            key="det_10g", file_names=("det_10g.onnx",), task="face detection (SCRFD-10G, 5 landmarks)",
            backend="face",
            # Dynamic height/width (multiples of 32); outputs: scores, boxes, landmarks for strides 8/16/32.
            # Batched exports (1, n, k) are accepted too (batched_outputs_ok).
            inputs=(TensorSpec(None, (1, 3, "height", "width")),),
            outputs=_DET_OUT,
            licence=_INSIGHTFACE_NC,
            source="Part of the InsightFace project's buffalo_l model pack.",
            size_hint="about 17 MB",
            batched_outputs_ok=True,
        ),
        ModelSpec(
            key="w600k_r50", file_names=("w600k_r50.onnx",), task="face identity embedding (ArcFace R50)",
            backend="face",
            inputs=(TensorSpec(None, ("batch", 3, 112, 112)),),
            outputs=(TensorSpec(None, ("batch", 512)),),
            licence=_INSIGHTFACE_NC,
            source="Part of the InsightFace project's buffalo_l model pack.",
            size_hint="about 174 MB",
        ),
        ModelSpec(
            key="inswapper_128", file_names=("inswapper_128.onnx",), task="face swap (128x128 crops)",
            backend="face",
            # Read by position: first the aligned target crop (RGB 0..1), then the identity latent.
            inputs=(TensorSpec(None, (1, 3, 128, 128)), TensorSpec(None, (1, 512))),
            outputs=(TensorSpec(None, (1, 3, 128, 128)),),
            licence=_INSIGHTFACE_NC,
            source="Released by the InsightFace project as inswapper_128.onnx (the file Deep-Live-Cam and "
                   "FaceFusion use; not the fp16 variant).",
            size_hint="about 554 MB",
            extra_check=_inswapper_emap,
        ),
        ModelSpec(
            key="gfpgan_1.4", file_names=("gfpgan_1.4.onnx", "GFPGANv1.4.onnx"),
            task="face restoration (GFPGAN v1.4, 512x512 crops, RGB in -1..1)",
            backend="face",
            inputs=(TensorSpec(None, (1, 3, 512, 512)),),
            outputs=(TensorSpec(None, (1, 3, 512, 512)),),
            licence="Apache-2.0 (GFPGAN, Tencent ARC); parts derive from NVIDIA StyleGAN2 code under its "
                    "own licence",
            source="An ONNX export of GFPGAN v1.4: the GFPGAN project publishes the PyTorch weights and "
                   "FaceFusion distributes an ONNX export named gfpgan_1.4.onnx.",
            size_hint="about 340 MB",
            required=False,
        ),
        ModelSpec(
            key="rvc_content_encoder", file_names=("rvc_content_encoder.onnx", "contentvec_768.onnx"),
            task="speech content features (ContentVec/HuBERT base, 768-d, 50 frames/s)",
            backend="voice",
            # 'audio': 16 kHz mono float32 in -1..1; 'units': one 768-d vector per 320 samples (20 ms).
            inputs=(TensorSpec("audio", (1, "samples")),),
            outputs=(TensorSpec("units", (1, "frames", 768)),),
            licence="MIT (ContentVec); HuBERT base weights from fairseq are MIT as well",
            source="The ContentVec 768-d ONNX export that RVC (Retrieval-based-Voice-Conversion) voice "
                   "changers use as their feature extractor.",
            size_hint="about 380 MB",
        ),
        ModelSpec(
            key="rvc_pitch", file_names=("rvc_pitch.onnx", "rmvpe.onnx"),
            task="pitch (f0) estimation (RMVPE, 100 frames/s)",
            backend="voice",
            # 'waveform': 16 kHz mono float32; 'f0': Hz per 10 ms frame, 0 where unvoiced.
            inputs=(TensorSpec("waveform", (1, "samples")),),
            outputs=(TensorSpec("f0", (1, "frames")),),
            licence="MIT (RMVPE as distributed with the RVC project)",
            source="The RMVPE pitch model's ONNX export from the RVC (Retrieval-based-Voice-Conversion) "
                   "project.",
            size_hint="about 345 MB",
        ),
        ModelSpec(
            key="rvc_decoder", file_names=("rvc_decoder.onnx",),
            task="voice synthesis for one persona (RVC v2 generator, 40 kHz)",
            backend="voice",
            # The tensor names RVC's own ONNX exporter writes.
            inputs=(
                TensorSpec("phone", (1, "frames", 768)),
                TensorSpec("phone_lengths", (1,), "int64"),
                TensorSpec("pitch", (1, "frames"), "int64"),  # coarse pitch bins 1..255
                TensorSpec("pitchf", (1, "frames")),  # f0 in Hz
                TensorSpec("ds", (1,), "int64"),  # speaker id
                TensorSpec("rnd", (1, 192, "frames")),  # noise
            ),
            outputs=(TensorSpec("audio", (1, 1, "samples")),),
            licence="the persona's own: you train it on their consented voice recordings (RVC code is MIT)",
            source="Train it yourself with the RVC (Retrieval-based-Voice-Conversion) WebUI on the "
                   "persona's consented voice and export it there with 'export ONNX' (v2, 768-d).",
            size_hint="about 55-110 MB",
        ),
    )
}

def resolve_models_dir(explicit: str | os.PathLike[str] | None = None) -> tuple[Path, str]:
    """The models folder and where it came from: --models-dir, then $EVERCALL_MODELS, then the home."""
    if explicit:
        return Path(explicit).expanduser(), "--models-dir"
    env = os.environ.get(MODELS_ENV)
    if env:
        return Path(env).expanduser(), MODELS_ENV
    return default_home() / "models", "default"


def models_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    return resolve_models_dir(explicit)[0]


def model_path(spec: ModelSpec, folder: str | os.PathLike[str]) -> Path:
    """The file for `spec` in `folder`: the first accepted name that exists, else the suggested name."""
    folder = Path(folder)
    for name in spec.file_names:
        if (folder / name).is_file():
            return folder / name
    return folder / spec.file_name


@dataclass(frozen=True)
class CheckResult:
    """The outcome of checking one model file; `line()` is what a user reads."""

    spec: ModelSpec
    path: Path
    status: str  # "ok" | "missing" | "unreadable" | "mismatch"
    problem: str = ""
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def line(self) -> str:
        if self.ok:
            return f"{self.spec.key}: ok ({self.path})"
        return f"{self.spec.key}: {self.status}: {self.problem}: {self.fix}"


def _get_fix(spec: ModelSpec, folder: Path) -> str:
    return (f"{spec.source} Save it as {folder / spec.file_name}, or point --models-dir / {MODELS_ENV} "
            f"at its folder")


def check(spec: ModelSpec, folder: str | os.PathLike[str]) -> CheckResult:
    """Whether `spec`'s file is in `folder`, loads as ONNX and has the expected signature."""
    folder = Path(folder)
    path = model_path(spec, folder)
    if not path.is_file():
        return CheckResult(spec, path, "missing", f"{spec.file_name} not found in {folder}",
                           _get_fix(spec, folder))
    try:
        model = _load_graph(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure means the same thing to the user
        why = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        return CheckResult(spec, path, "unreadable", f"{path} is not a readable ONNX model ({why})",
                           f"download it again (a Git LFS pointer or an interrupted copy looks like this). "
                           f"{_get_fix(spec, folder)}")
    if not model.graph.input and not model.graph.output:
        return CheckResult(spec, path, "unreadable", f"{path} is empty or not an ONNX model",
                           f"download it again. {_get_fix(spec, folder)}")
    problem = _signature_problem(spec, model)
    if problem:
        return CheckResult(spec, path, "mismatch", f"{path.name} {problem}",
                           f"this is not {spec.key} ({spec.task}). {_get_fix(spec, folder)}")
    return CheckResult(spec, path, "ok")


def check_all(keys: Iterable[str], folder: str | os.PathLike[str]) -> list[CheckResult]:
    return [check(MODELS[k], folder) for k in keys]


def require(keys: Iterable[str], folder: str | os.PathLike[str]) -> dict[str, Path]:
    """Paths of every model in `keys`, or one ModelError naming each missing or wrong file and the fix."""
    results = check_all(keys, folder)
    bad = [r for r in results if not r.ok]
    if bad:
        if len(bad) == 1:
            raise ModelError(bad[0].line())
        names = ", ".join(f"{r.path.name} ({r.status})" for r in bad)
        raise ModelError(f"model files not usable in {Path(folder)}: {names}: run `evercall models check "
                         f"--models-dir {Path(folder)}` for what each needs, and `evercall models list` for "
                         f"where to get them")
    return {r.spec.key: r.path for r in results}


def choose_providers(available: Sequence[str] | None = None) -> list[str]:
    """Execution providers to ask for, best first: TensorRT, CUDA, CPU, as far as onnxruntime has them."""
    if available is None:
        import onnxruntime

        available = onnxruntime.get_available_providers()
    chosen = [p for p in PROVIDER_ORDER if p in available]
    return chosen or list(available[:1])


def open_session(spec: ModelSpec, folder: str | os.PathLike[str], providers: Sequence[str] | None = None,
                 checked: CheckResult | None = None):
    """An onnxruntime.InferenceSession for `spec`'s file, after checking its signature (`checked`: a check
    the caller already made, so a file of hundreds of MB is not parsed twice).

    The provider really in use is `session.get_providers()[0]` (onnxruntime silently falls back to CPU
    when, say, CUDA libraries are missing); `session_provider(session)` returns it.
    """
    result = checked if checked is not None else check(spec, folder)
    if not result.ok:
        raise ModelError(result.line())
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # unused-initializer warnings (inswapper's emap) are noise to users
    return onnxruntime.InferenceSession(str(result.path), sess_options=options,
                                        providers=list(providers) if providers else choose_providers())


def session_provider(session: object) -> str:
    """The execution provider a session actually runs on."""
    return str(session.get_providers()[0])  # type: ignore[attr-defined]


def _load_graph(path: Path):
    import onnx

    try:
        return onnx.load_model(str(path), load_external_data=False)
    except TypeError:  # very old onnx without the keyword
        return onnx.load_model(str(path))


def _elem_dtype(elem_type: int) -> str:
    import numpy as np
    import onnx

    try:
        return str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)))
    except (KeyError, TypeError, ValueError):
        return f"type{elem_type}"


def _graph_tensors(values: Iterable[object]) -> list[tuple[str, tuple[Dim, ...], str]]:
    out = []
    for v in values:
        t = v.type.tensor_type  # type: ignore[attr-defined]
        dims: list[Dim] = []
        for d in t.shape.dim:
            dims.append(int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or None))
        out.append((v.name, tuple(dims), _elem_dtype(t.elem_type)))  # type: ignore[attr-defined]
    return out


def _shape_matches(expected: tuple[Dim, ...], actual: tuple[Dim, ...], batch_optional: bool) -> bool:
    """Fixed sizes must agree; a symbolic or unknown axis in the file may take any size at run time."""
    if batch_optional and len(actual) == len(expected) + 1 and not (isinstance(actual[0], int)
                                                                    and actual[0] != 1):
        actual = actual[1:]  # a batched export: (1, n, k) instead of (n, k)
    if len(actual) != len(expected):
        return False
    return all(not (isinstance(e, int) and isinstance(a, int) and e != a) for e, a in zip(expected, actual))


def _signature_problem(spec: ModelSpec, model: object) -> str | None:
    """Why the model's graph does not match `spec`, or None."""
    graph = model.graph  # type: ignore[attr-defined]
    init_names = {i.name for i in graph.initializer}
    # Old exporters list initializers among the graph inputs; they are weights, not inputs.
    ins = _graph_tensors(v for v in graph.input if v.name not in init_names)
    outs = _graph_tensors(graph.output)
    for kind, expected, actual in (("inputs", spec.inputs, ins), ("outputs", spec.outputs, outs)):
        if len(actual) != len(expected):
            return (f"has {len(actual)} {kind}, expected {len(expected)}: "
                    f"expected {spec.signature()}, found {_describe(ins, outs)}")
        for i, (e, (name, shape, dtype)) in enumerate(zip(expected, actual)):
            if e.name is not None and name != e.name:
                return f"{kind[:-1]} {i} is named {name!r}, expected {e.name!r}"
            if not _shape_matches(e.shape, shape, kind == "outputs" and spec.batched_outputs_ok):
                return f"{kind[:-1]} {i} ({name}) has shape {_dims(shape)}, expected {_dims(e.shape)}"
            if dtype != e.dtype:
                return f"{kind[:-1]} {i} ({name}) is {dtype}, expected {e.dtype}"
    if spec.extra_check is not None:
        return spec.extra_check(model)
    return None


def _dims(shape: tuple[Dim, ...]) -> str:
    return "x".join("?" if d is None else str(d) for d in shape)


def _describe(ins: list, outs: list) -> str:
    a = ", ".join(f"{n}[{_dims(s)}]" for n, s, _ in ins)
    b = ", ".join(f"{n}[{_dims(s)}]" for n, s, _ in outs)
    return f"({a}) -> ({b})"
