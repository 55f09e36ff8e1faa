"""Tiny ONNX stand-ins for the neural backends' models, with the real files' input/output signatures.

The real weights cannot be downloaded here (and several are non-commercial), so the tests build
models of a few kilobytes that insightface and onnxruntime load exactly as they would the real ones:
the same tensor names, ranks, fixed sizes and dynamic axes, and (for inswapper) the 512x512 'emap'
initializer placed last. Their arithmetic is deliberately simple but not constant, so the real code
paths (SCRFD decoding and NMS, alignment, ArcFace, inswapper's paste-back) run end to end:

- detector (det_10g-like): finds "the most textured place". Each stride-32 cell scores
  sigmoid(GAIN * (local variance - VAR_THRESHOLD)) over a 96-px window, only at the cell whose variance
  is the frame's maximum, so there is exactly one detection on any textured frame and none on a flat
  one (a black frame, a covered camera). Box and five landmarks are constants around that cell.
  Strides 8 and 16 never fire.
- ArcFace (w600k_r50-like): 512-d embedding = linear map of the crop's mean colour.
- inswapper: output = 1 - target (colour negative) shifted by a small linear function of the source
  latent, so the pasted face visibly differs from the operator's.
- restorer (GFPGAN-like): output = -input (negative in its -1..1 range).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from engine.models import MODELS, ModelSpec

OPSET = 17
IR_VERSION = 8  # readable by every onnxruntime from 1.11 on

# Detector constants (pixels in the detector's input, i.e. the letterboxed frame).
GAIN = 2000.0
VAR_THRESHOLD = 0.005  # in the detector's normalised units ((p - 127.5) / 128)^2
BOX_HALF = 100.0  # the reported face box is 200 px square
STRIDES = (8, 16, 32)
# Real det_10g tensor names (scores, boxes, landmarks for strides 8, 16, 32).
DET_OUTPUT_NAMES = ("448", "471", "494", "451", "474", "497", "454", "477", "500")
# Five-point template of a 112x112 ArcFace crop (eyes, nose, mouth corners), as insightface aligns to.
_ARCFACE_5 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                       [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)


def _save(model: onnx.ModelProto, path: Path) -> Path:
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _opset() -> list:
    return [helper.make_opsetid("", OPSET)]


def _const(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def face_layout(stride: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(box distances l,t,r,b; 10 landmark offsets) in stride units, relative to the firing anchor.

    The anchor is the cell's top-left corner; the variance window is centred half a cell further in.
    """
    centre = stride / 2
    box = np.array([BOX_HALF - centre, BOX_HALF - centre, BOX_HALF + centre, BOX_HALF + centre]) / stride
    pts = (_ARCFACE_5 - 56.0) * (2 * BOX_HALF / 112.0) * 0.8 + centre
    return box.astype(np.float32), (pts.reshape(-1) / stride).astype(np.float32)


def make_detector(path: Path, *, input_name: str = "input.1") -> Path:
    """An SCRFD-shaped detector: input (1, 3, ?, ?), 9 outputs (n,1)x3, (n,4)x3, (n,10)x3."""
    nodes, inits = [], []
    box32, kps32 = face_layout(32)
    inits += [_const("flat_shape_1", np.array([-1, 1], np.int64)),
              _const("flat_shape_4", np.array([-1, 4], np.int64)),
              _const("flat_shape_10", np.array([-1, 10], np.int64))]

    def flatten_rows(src: str, width: int, out: str) -> None:
        # (1, 2*width, h, w) -> (h*w*2, width): rows ordered by cell, then anchor, as SCRFD expects.
        nodes.append(helper.make_node("Transpose", [src], [src + "_t"], perm=[0, 2, 3, 1]))
        nodes.append(helper.make_node("Reshape", [src + "_t", f"flat_shape_{width}"], [out]))

    def constant_maps(feat: str, s: int, box: np.ndarray, kps: np.ndarray) -> None:
        # Per-anchor constants on an (h, w) grid: a 1x1 conv with zero weights and the constants as bias.
        for kind, vals in (("box", box), ("kps", kps)):
            w = np.zeros((2 * len(vals), 1, 1, 1), np.float32)
            inits.append(_const(f"{kind}{s}_w", w))
            inits.append(_const(f"{kind}{s}_b", np.tile(vals, 2).astype(np.float32)))
            nodes.append(helper.make_node("Conv", [feat, f"{kind}{s}_w", f"{kind}{s}_b"], [f"{kind}{s}_map"]))

    # Grey level per pixel (mean over colour channels), and its square.
    nodes.append(helper.make_node("ReduceMean", [input_name], ["grey"], axes=[1], keepdims=1))
    nodes.append(helper.make_node("Mul", ["grey", "grey"], ["grey_sq"]))
    for s in STRIDES:
        if s != 32:
            # A quiet level: feature map of the right size, scores ~0, anything in the boxes.
            nodes.append(helper.make_node("AveragePool", ["grey"], [f"feat{s}"], kernel_shape=[s, s],
                                          strides=[s, s]))
            inits.append(_const(f"score{s}_w", np.zeros((2, 1, 1, 1), np.float32)))
            inits.append(_const(f"score{s}_b", np.full(2, -30.0, np.float32)))
            nodes.append(helper.make_node("Conv", [f"feat{s}", f"score{s}_w", f"score{s}_b"], [f"logit{s}"]))
            nodes.append(helper.make_node("Sigmoid", [f"logit{s}"], [f"score{s}_map"]))
            constant_maps(f"feat{s}", s, np.ones(4, np.float32), np.zeros(10, np.float32))
            continue
        # Local variance over a 3x3-cell window: floor((H + 2*32 - 96) / 32) + 1 = H // 32 cells.
        pool = dict(kernel_shape=[96, 96], strides=[32, 32], pads=[32, 32, 32, 32])
        nodes.append(helper.make_node("AveragePool", ["grey"], ["mean32"], **pool))
        nodes.append(helper.make_node("AveragePool", ["grey_sq"], ["meansq32"], **pool))
        nodes.append(helper.make_node("Mul", ["mean32", "mean32"], ["mean32_sq"]))
        nodes.append(helper.make_node("Sub", ["meansq32", "mean32_sq"], ["var32"]))
        # Only the frame's most textured cell may fire: one face per frame, none on a flat frame.
        nodes.append(helper.make_node("ReduceMax", ["var32"], ["var32_max"], keepdims=1))
        nodes.append(helper.make_node("Equal", ["var32", "var32_max"], ["is_max"]))
        nodes.append(helper.make_node("Cast", ["is_max"], ["is_max_f"], to=TensorProto.FLOAT))
        inits += [_const("var_t", np.array(VAR_THRESHOLD, np.float32)),
                  _const("gain", np.array(GAIN, np.float32))]
        nodes.append(helper.make_node("Sub", ["var32", "var_t"], ["var_d"]))
        nodes.append(helper.make_node("Mul", ["var_d", "gain"], ["var_logit"]))
        nodes.append(helper.make_node("Sigmoid", ["var_logit"], ["var_score"]))
        nodes.append(helper.make_node("Mul", ["var_score", "is_max_f"], ["anchor0"]))
        nodes.append(helper.make_node("Sub", ["anchor0", "anchor0"], ["anchor1"]))  # second anchor: 0
        nodes.append(helper.make_node("Concat", ["anchor0", "anchor1"], ["score32_map"], axis=1))
        constant_maps("var32", 32, box32, kps32)
    outputs = []
    for group, width in (("score", 1), ("box", 4), ("kps", 10)):
        for s in STRIDES:
            name = DET_OUTPUT_NAMES[len(outputs)]
            flatten_rows(f"{group}{s}_map", width, name)
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, width]))
    graph = helper.make_graph(
        nodes, "tiny_scrfd",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, 3, "?", "?"])],
        outputs, initializer=inits)
    return _save(helper.make_model(graph, opset_imports=_opset()), path)


def make_arcface(path: Path, *, size: int = 112, seed: int = 1) -> Path:
    """ArcFace-shaped: 'input.1' (N, 3, size, size) -> '683' (N, 512), a linear map of the mean colour."""
    rng = np.random.default_rng(seed)
    inits = [_const("fc_w", rng.normal(size=(3, 512)).astype(np.float32)),
             _const("fc_b", rng.normal(size=512).astype(np.float32))]
    nodes = [helper.make_node("GlobalAveragePool", ["input.1"], ["pooled"], name="pool"),
             helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten", axis=1),
             helper.make_node("MatMul", ["flat", "fc_w"], ["fc"], name="fc"),
             helper.make_node("Add", ["fc", "fc_b"], ["683"], name="fc_bias")]
    graph = helper.make_graph(
        nodes, "tiny_arcface",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["None", 3, size, size])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["None", 512])], initializer=inits)
    return _save(helper.make_model(graph, opset_imports=_opset()), path)


def make_inswapper(path: Path, *, with_emap: bool = True) -> Path:
    """inswapper-shaped: 'target' (1,3,128,128) + 'source' (1,512) -> 'output' (1,3,128,128), emap last."""
    rng = np.random.default_rng(2)
    inits = [_const("one", np.array(1.0, np.float32)),
             _const("src_w", (rng.normal(size=(512, 3)) * 0.01).astype(np.float32)),
             _const("colour_shape", np.array([1, 3, 1, 1], np.int64)),
             _const("lo", np.array(0.0, np.float32)), _const("hi", np.array(1.0, np.float32))]
    if with_emap:
        # insightface reads graph.initializer[-1] as the 512x512 identity map; float16 keeps it at 512 KB.
        inits.append(_const("emap", np.eye(512, dtype=np.float16)))
    nodes = [helper.make_node("Sub", ["one", "target"], ["negative"]),
             helper.make_node("MatMul", ["source", "src_w"], ["shift"]),
             helper.make_node("Reshape", ["shift", "colour_shape"], ["shift4"]),
             helper.make_node("Add", ["negative", "shift4"], ["raw"]),
             helper.make_node("Clip", ["raw", "lo", "hi"], ["output"])]
    graph = helper.make_graph(
        nodes, "tiny_inswapper",
        [helper.make_tensor_value_info("target", TensorProto.FLOAT, [1, 3, 128, 128]),
         helper.make_tensor_value_info("source", TensorProto.FLOAT, [1, 512])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 128, 128])], initializer=inits)
    return _save(helper.make_model(graph, opset_imports=_opset()), path)


def make_restorer(path: Path, *, size: int = 512) -> Path:
    """GFPGAN-shaped: 'input' (1,3,512,512) -> 'output' (1,3,512,512), the negative in -1..1."""
    graph = helper.make_graph(
        [helper.make_node("Neg", ["input"], ["output"])], "tiny_restorer",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, size, size])])
    return _save(helper.make_model(graph, opset_imports=_opset()), path)


_DTYPES = {"float32": TensorProto.FLOAT, "int64": TensorProto.INT64}


def make_from_spec(spec: ModelSpec, path: Path) -> Path:
    """Any registry entry's signature with a trivial body (each output a small constant tensor).

    For signature checks and session opening only; the numbers it computes mean nothing.
    """
    inputs = [helper.make_tensor_value_info(t.name or f"in{i}", _DTYPES[t.dtype],
                                            [d if d is not None else "any" for d in t.shape])
              for i, t in enumerate(spec.inputs)]
    outputs, nodes = [], []
    for i, t in enumerate(spec.outputs):
        name = t.name or f"out{i}"
        value = helper.make_tensor("v", _DTYPES[t.dtype], [1], [0])
        nodes.append(helper.make_node("ConstantOfShape", [f"{name}_shape"], [name], value=value))
        outputs.append(helper.make_tensor_value_info(name, _DTYPES[t.dtype],
                                                     [d if d is not None else "any" for d in t.shape]))
    inits = [_const(f"{t.name or f'out{i}'}_shape",
                    np.array([d if isinstance(d, int) else 1 for d in t.shape], np.int64))
             for i, t in enumerate(spec.outputs)]
    if spec.key == "inswapper_128":
        inits.append(_const("emap", np.eye(512, dtype=np.float16)))
    graph = helper.make_graph(nodes, f"stub_{spec.key}", inputs, outputs, initializer=inits)
    return _save(helper.make_model(graph, opset_imports=_opset()), path)


def write_face_models(folder: Path, *, restorer: bool = False) -> Path:
    """The three (or four) face models under their registry file names in `folder`."""
    folder = Path(folder)
    make_detector(folder / MODELS["det_10g"].file_name)
    make_arcface(folder / MODELS["w600k_r50"].file_name)
    make_inswapper(folder / MODELS["inswapper_128"].file_name)
    if restorer:
        make_restorer(folder / MODELS["gfpgan_1.4"].file_name)
    return folder


# -- RVC-style voice stand-ins (see tests/test_voice_rvc.py for what each computes) ----------------------
DECODER_RATE = 40000
TONE_HZ = 130.0  # 15.6 periods per 120 ms block: consecutive windows start out of phase


def _io(spec_key: str) -> tuple[list, list]:
    """Graph inputs/outputs named, typed and shaped as the registry expects."""
    spec = MODELS[spec_key]
    make = helper.make_tensor_value_info
    return ([make(t.name, _DTYPES[t.dtype], list(t.shape)) for t in spec.inputs],
            [make(t.name, _DTYPES[t.dtype], list(t.shape)) for t in spec.outputs])


def make_encoder(path: Path) -> Path:
    inputs, outputs = _io("rvc_content_encoder")
    nodes = [
        helper.make_node("Reshape", ["audio", "frame_shape"], ["framed"]),
        helper.make_node("Abs", ["framed"], ["magnitude"]),
        helper.make_node("ReduceMean", ["magnitude"], ["level"], axes=[2], keepdims=1),
        helper.make_node("MatMul", ["level", "spread"], ["units"]),
    ]
    inits = [numpy_helper.from_array(np.array([1, -1, 320], np.int64), "frame_shape"),
             numpy_helper.from_array(np.ones((1, 768), np.float32), "spread")]
    return _save_graph(helper.make_graph(nodes, "tiny_content_encoder", inputs, outputs, inits), path)


def make_pitch(path: Path) -> Path:
    inputs, outputs = _io("rvc_pitch")
    nodes = [
        helper.make_node("Reshape", ["waveform", "frame_shape"], ["framed"]),
        helper.make_node("Mul", ["framed", "framed"], ["square"]),
        helper.make_node("ReduceMean", ["square"], ["power"], axes=[2], keepdims=0),
        helper.make_node("Greater", ["power", "threshold"], ["loud"]),
        helper.make_node("Cast", ["loud"], ["voiced"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["voiced", "tone"], ["f0"]),
    ]
    inits = [numpy_helper.from_array(np.array([1, -1, 160], np.int64), "frame_shape"),
             numpy_helper.from_array(np.array(1e-6, np.float32), "threshold"),
             numpy_helper.from_array(np.array(TONE_HZ, np.float32), "tone")]
    return _save_graph(helper.make_graph(nodes, "tiny_pitch", inputs, outputs, inits), path)


def make_decoder(path: Path) -> Path:
    inputs, outputs = _io("rvc_decoder")
    per_frame = DECODER_RATE // 100
    nodes = [
        helper.make_node("ReduceMean", ["phone"], ["amp"], axes=[2], keepdims=1),  # (1, T, 1)
        helper.make_node("Unsqueeze", ["pitchf", "last_axis"], ["hz"]),  # (1, T, 1)
        helper.make_node("Mul", ["amp", "ones"], ["amp_t"]),  # (1, T, per_frame)
        helper.make_node("Mul", ["hz", "ones"], ["hz_t"]),
        helper.make_node("Reshape", ["amp_t", "flat"], ["amp_s"]),  # (1, 1, T * per_frame)
        helper.make_node("Reshape", ["hz_t", "flat"], ["hz_s"]),
        helper.make_node("Mul", ["hz_s", "radians_per_hz"], ["step"]),
        helper.make_node("CumSum", ["step", "time_axis"], ["phase"]),
        helper.make_node("Sin", ["phase"], ["wave"]),
        helper.make_node("Mul", ["wave", "amp_s"], ["shaped"]),
        helper.make_node("Mul", ["shaped", "gain"], ["audio"]),  # a sine's mean |x| is 2/pi of its peak
    ]
    inits = [numpy_helper.from_array(np.array([2], np.int64), "last_axis"),
             numpy_helper.from_array(np.ones((1, 1, per_frame), np.float32), "ones"),
             numpy_helper.from_array(np.array([1, 1, -1], np.int64), "flat"),
             numpy_helper.from_array(np.array(2 * np.pi / DECODER_RATE, np.float32), "radians_per_hz"),
             numpy_helper.from_array(np.array(2, np.int64), "time_axis"),
             numpy_helper.from_array(np.array(np.pi / 2, np.float32), "gain")]
    return _save_graph(helper.make_graph(nodes, "tiny_decoder", inputs, outputs, inits), path)


def _save_graph(graph: onnx.GraphProto, path: Path) -> Path:
    return _save(helper.make_model(graph, opset_imports=_opset()), path)
