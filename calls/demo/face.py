"""The demo persona's photo: a composite of package-shipped sample faces that depicts no real person."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engine.errors import MediaError

PHOTO_SIZE = 512
# The package-shipped images the persona is made from, by package and path inside it.
SOURCES = (
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "face"),
    ("insightface", "data/images/t1.jpg", "the frontal faces of this group photo; one of them also gives "
     "the outline of hair, neck and shoulders, its hair recoloured and its room removed"),
    ("insightface", "data/images/Tom_Hanks_54745.png", "face"),
)

# A source face is used only when it looks at the camera: a turned face warps into a smeared one.
_MIN_FRONTAL = 0.65

# The face in t1.jpg (relative centre) whose head, hair, clothes and room carry the composite face: a
# frontal woman with a plain hairstyle. Averaging everyone's hair, hats, hands and rooms gives mud.
_CARRIER_AT = (0.924, 0.376)

# MediaPipe face-mesh index groups used below.
_RIGHT_EYE = [7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246]
_LEFT_EYE = [249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466]
_LIPS = [0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191, 267,
         269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415]
_INNER_UPPER = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
_INNER_LOWER = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308]
_OUTER_LOWER = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291]
_N_MESH = 468



@contextmanager
def _mesher() -> Iterator[Callable[[np.ndarray], np.ndarray | None]]:
    """A still-image face mesher returning the 468 mesh points (no iris) as float64, or None."""
    from filters.face.landmarks import FaceMesher

    mesher = FaceMesher(still=True)
    try:
        def mesh(image: np.ndarray) -> np.ndarray | None:
            pts = mesher(image)
            return None if pts is None else pts[:_N_MESH].astype(np.float64)

        yield mesh
    finally:
        mesher.close()


# ----------------------------------------------------------------------------------------------------------
# the composite persona face


@dataclass
class _SourceFace:
    name: str
    image: np.ndarray  # BGR
    points: np.ndarray  # (468, 2) float64 pixel mesh points in `image`
    upscale: float  # pixels of `image` per pixel of the original photo (detail is no finer than this)
    valid: np.ndarray  # float 0..1: 1 where `image` shows the photo, 0 where a crop ran past its edge
    tight: bool = False  # the image is a tight face crop: nothing usable outside the face outline
    glasses: bool = False  # frames over the eyes: the eyes count little
    hat: bool = False  # a hat over the forehead: nothing above the brows counts
    carrier: bool = False  # this photo's hair, clothes and room surround the composite face


def _sample_paths() -> dict[str, Path]:
    """Package-shipped sample photos; raises a clear error if a package is missing."""
    import importlib.util

    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - a project dependency
        raise MediaError(f"the demo persona needs {exc.name} installed (pip install -e .)") from exc
    # insightface's sample images are package data: find the package without importing it (its import pulls
    # in its model-download machinery, which the demo does not need).
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        raise MediaError("the demo persona needs insightface installed: run `bash install.sh`")
    images = Path(list(spec.submodule_search_locations)[0]) / "data" / "images"
    paths = {
        "grace_hopper": Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg",
        "t1": images / "t1.jpg",
        "tom_hanks": images / "Tom_Hanks_54745.png",
    }
    for path in paths.values():
        if not path.is_file():
            raise MediaError(f"demo sample image missing: {path} (reinstall matplotlib / insightface)")
    return paths


def _read_bgr(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise MediaError(f"cannot read demo sample image {path}")
    return image


def detect_faces(
    image_bgr: np.ndarray, tile: int = 640, min_score: float = 0.5
) -> list[tuple[float, float, float]]:
    """Face centres and sizes (cx, cy, size) in a group photo, left to right.

    MediaPipe's short-range detector only sees faces that fill a good part of its input, so it runs on
    overlapping tiles; duplicates from the overlaps are merged, best score first. False hits are cheap:
    the caller keeps only crops in which the mesher finds a frontal face.
    """
    import mediapipe as mp

    h, w = image_bgr.shape[:2]
    xs = list(range(0, max(w - tile, 0) + 1, tile // 2))
    ys = list(range(0, max(h - tile, 0) + 1, tile // 2))
    if xs[-1] + tile < w:
        xs.append(w - tile)
    if ys[-1] + tile < h:
        ys.append(h - tile)
    found: list[tuple[float, float, float, float]] = []
    detection = mp.solutions.face_detection
    with detection.FaceDetection(model_selection=0, min_detection_confidence=min_score) as det:
        for y0 in ys:
            for x0 in xs:
                part = np.ascontiguousarray(image_bgr[y0:y0 + tile, x0:x0 + tile])
                ph, pw = part.shape[:2]
                result = det.process(cv2.cvtColor(part, cv2.COLOR_BGR2RGB))
                for d in result.detections or []:
                    if d.score[0] < min_score:
                        continue
                    b = d.location_data.relative_bounding_box
                    size = max(b.width * pw, b.height * ph)
                    cx = (b.xmin + b.width / 2) * pw + x0
                    cy = (b.ymin + b.height / 2) * ph + y0
                    found.append((float(d.score[0]), cx, cy, size))
    found.sort(key=lambda f: -f[0])
    kept: list[tuple[float, float, float, float]] = []
    for f in found:
        if all(np.hypot(f[1] - k[1], f[2] - k[2]) > 0.5 * k[3] for k in kept):
            kept.append(f)
    return [(cx, cy, size) for _, cx, cy, size in sorted(kept, key=lambda k: k[1])]


def _crop(image: np.ndarray, cx: float, cy: float, side: float, out: int) -> tuple[np.ndarray, np.ndarray]:
    """A square crop of `side` pixels centred on (cx, cy), resampled to `out` pixels, and its valid mask.

    Past the photo's edge the crop repeats the edge pixels (a mirror would put a second copy of the face
    into it); the mask says where that happened.
    """
    s = out / side
    m = np.float32([[s, 0, out / 2 - cx * s], [0, s, out / 2 - cy * s]])
    crop = cv2.warpAffine(image, m, (out, out), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    ones = np.ones(image.shape[:2], np.float32)
    valid = cv2.warpAffine(ones, m, (out, out), flags=cv2.INTER_LINEAR, borderValue=0.0)
    return crop, valid


def _frontal(points: np.ndarray) -> float:
    """1 for a face looking at the camera, lower as it turns (nose-to-eye-corner distance ratio)."""
    r = np.linalg.norm(points[1] - points[33]) / max(np.linalg.norm(points[1] - points[263]), 1e-6)
    return float(min(r, 1 / r))


def source_faces() -> list[_SourceFace]:
    """The frontal faces of the package-shipped sample photos, each with its mesh."""
    paths = _sample_paths()
    faces: list[_SourceFace] = []
    with _mesher() as mesh:
        grace = _read_bgr(paths["grace_hopper"])
        pts = mesh(grace)
        if pts is not None:
            faces.append(_SourceFace("grace_hopper", grace, pts, 1.0, np.ones(grace.shape[:2], np.float32),
                                     glasses=True, hat=True))

        group = _read_bgr(paths["t1"])
        for i, (cx, cy, size) in enumerate(detect_faces(group)):
            side = size * 3.6  # room for hair and shoulders
            crop, valid = _crop(group, cx, cy, side, 768)
            pts = mesh(crop)
            if pts is not None:
                rel = (cx / group.shape[1], cy / group.shape[0])
                carrier = bool(np.hypot(rel[0] - _CARRIER_AT[0], rel[1] - _CARRIER_AT[1]) < 0.05)
                faces.append(_SourceFace(f"t1_{i}", crop, pts, 768 / side, valid, carrier=carrier))

        hanks = _read_bgr(paths["tom_hanks"])  # a 112x112 aligned crop: pad it so the mesher sees a face
        h, w = hanks.shape[:2]
        padded = cv2.copyMakeBorder(hanks, h // 2, h // 2, w // 2, w // 2, cv2.BORDER_REPLICATE)
        padded = cv2.resize(padded, (4 * w, 4 * h), interpolation=cv2.INTER_CUBIC)
        valid = cv2.copyMakeBorder(np.ones((h, w), np.float32), h // 2, h // 2, w // 2, w // 2,
                                   cv2.BORDER_CONSTANT, value=0.0)
        valid = cv2.resize(valid, (4 * w, 4 * h), interpolation=cv2.INTER_LINEAR)
        pts = mesh(padded)
        if pts is not None:
            faces.append(_SourceFace("tom_hanks", padded, pts, 2.0, valid, tight=True))
    faces = [f for f in faces if _frontal(f.points) >= _MIN_FRONTAL]
    if faces and not any(f.carrier for f in faces):  # fall back to any frontal face with its room
        untight = [f for f in faces if not f.tight and not f.hat]
        if untight:
            untight[-1].carrier = True
    if len(faces) < 4:
        raise MediaError(f"only {len(faces)} usable sample faces for the demo persona: check mediapipe")
    return faces


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity (rotation, uniform scale, shift) taking `src` points onto `dst`."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, s, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(u @ vt))
    r = u @ np.diag([1.0, d]) @ vt
    scale = (s * [1.0, d]).sum() / (a**2).sum()
    m = scale * r.T
    return np.hstack([m, (md - m @ ms)[:, None]])


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def _eye_openness(p: np.ndarray) -> float:
    """Lid gap over eye width, both eyes: about 0.3 open, under 0.12 closed or looking down."""
    r = np.linalg.norm(p[159] - p[145]) / np.linalg.norm(p[33] - p[133])
    l = np.linalg.norm(p[386] - p[374]) / np.linalg.norm(p[362] - p[263])
    return float((r + l) / 2)


def _mouth_openness(p: np.ndarray) -> float:
    """Inner-lip gap over mouth width: 0 for closed lips, 0.2+ for a laugh."""
    return float(np.linalg.norm(p[13] - p[14]) / np.linalg.norm(p[78] - p[308]))


def _region_weights(face: _SourceFace) -> tuple[float, float]:
    """How much this face may contribute to the eyes and to the mouth of the composite.

    Closed or downcast eyes, glasses and open laughing mouths are not shape: averaging them in gives
    sleepy eyes, ghost frames and ghost teeth, so they count little there.
    """
    eyes = float(np.clip((_eye_openness(face.points) - 0.12) / 0.14, 0.05, 1.0))
    if face.glasses:
        eyes = 0.05
    mouth = float(np.clip(1.0 - _mouth_openness(face.points) / 0.15, 0.05, 1.0))
    return eyes, mouth


def _grow(pts: np.ndarray, k: float) -> np.ndarray:
    c = pts.mean(0)
    return (pts - c) * k + c


def _oval_rings(points: np.ndarray, oval: list[int], scales: tuple[float, ...]) -> np.ndarray:
    """Rings of points around the face: the face outline scaled about its centre, for hair and neck."""
    ring = points[oval]
    centre = ring.mean(0)
    return np.vstack([(ring - centre) * k + centre for k in scales])


def _poly_mask(shape: tuple[int, int], pts: np.ndarray, blur: float = 0) -> np.ndarray:
    """Float mask in 0..1 of the convex hull of `pts`, optionally feathered."""
    mask = np.zeros(shape, np.float32)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(pts).astype(np.int32)), 1.0, lineType=cv2.LINE_AA)
    if blur:
        mask = cv2.GaussianBlur(mask, (0, 0), blur)
    return mask


def _mean_shape(faces: list[_SourceFace], weights: list[tuple[float, float]], size: int) -> np.ndarray:
    """Generalised Procrustes mean of the meshes, placed upright in a size x size portrait frame.

    Eye and lip points are weighted like the textures, so the mean has open eyes and closed lips.
    """
    point_w = np.ones((len(faces), _N_MESH))
    for i, (we, wm) in enumerate(weights):
        point_w[i, _RIGHT_EYE + _LEFT_EYE] = we
        point_w[i, _LIPS] = wm
    ref = faces[0].points
    for _ in range(4):
        aligned = np.stack([_apply(_similarity(f.points, ref), f.points) for f in faces])
        ref = (aligned * point_w[..., None]).sum(0) / point_w.sum(0)[:, None]
    right, left = ref[_RIGHT_EYE].mean(0), ref[_LEFT_EYE].mean(0)
    angle = np.arctan2(left[1] - right[1], left[0] - right[0])
    c, s = np.cos(-angle), np.sin(-angle)
    rot = np.array([[c, -s], [s, c]])
    scale = 0.18 * size / np.linalg.norm(left - right)  # eyes 18 % of the frame apart
    return ((ref - (left + right) / 2) @ rot.T) * scale + (size / 2, 0.43 * size)


@dataclass
class _Blend:
    """The averaged face and the carrier photo it goes into, both in the final portrait frame."""

    face: np.ndarray  # float32 BGR: the average of the sources, meaningful where face_mask > 0
    face_mask: np.ndarray  # float32 0..1: where the average face replaces the carrier's
    carrier: np.ndarray  # uint8 BGR: the carrier photo warped to the mean shape (hair, neck, clothes)
    mesh: np.ndarray  # (468, 2) float64: the mean face shape, in pixels of the frame


def _blend_faces(size: int) -> _Blend:
    """The shape- and texture-average of the sample faces and the carrier warped to the same mean shape.

    The face (inside the mesh outline) is the weighted average of every source, warped to their mean
    shape. The carrier photo is warped the same way; what of it is kept is up to the caller.
    """
    from filters.face.landmarks import face_oval_indices
    from filters.face.warp import triangulate, warp_face

    faces = source_faces()
    oval = face_oval_indices()
    weights = [_region_weights(f) for f in faces]
    mean = _mean_shape(faces, weights, size)
    iod = float(np.linalg.norm(mean[_RIGHT_EYE].mean(0) - mean[_LEFT_EYE].mean(0)))

    # Extra points so the warp carries hair, neck and background, not just the mesh.
    ring_scales = (1.35, 1.8, 2.4)
    rings = _oval_rings(mean, oval, ring_scales)
    ring_ok = np.all((rings > 4) & (rings < size - 5), axis=1)
    g = np.linspace(0, size - 1, 6)
    border = np.array([(x, y) for x in g for y in g if x in (g[0], g[-1]) or y in (g[0], g[-1])])
    dst = np.vstack([mean, rings[ring_ok], border]).astype(np.float32)
    tri = triangulate(dst)

    shape = (size, size)
    face_mask = _poly_mask(shape, _grow(mean[oval], 0.97), blur=size / 70)
    skin = _poly_mask(shape, _grow(mean[oval], 0.8))
    # Region masks feather over a good part of an eye width: a sharp change of who contributes shows
    # as a seam (rings round the eyes) in the average.
    soft = 0.12 * iod
    eye_region = np.maximum(_poly_mask(shape, _grow(mean[_RIGHT_EYE], 1.5), blur=soft),
                            _poly_mask(shape, _grow(mean[_LEFT_EYE], 1.5), blur=soft))
    eyes = mean[_RIGHT_EYE + _LEFT_EYE]
    eyes_c = eyes.mean(0)
    mouth_region = _poly_mask(shape, _grow(mean[_LIPS], 1.3), blur=soft)
    yy = np.arange(size, dtype=np.float32)[:, None]
    below_glasses = np.clip((yy - eyes_c[1] - 0.55 * iod) / (0.35 * iod), 0, 1) * np.ones(shape, np.float32)
    skin *= np.maximum(eye_region, mouth_region) < 0.05
    brow_y = float(mean[[70, 63, 105, 66, 107, 336, 296, 334, 293, 300]][:, 1].min())
    below_brows = np.clip((yy - brow_y + 0.1 * iod) / (0.2 * iod), 0, 1) * np.ones(shape, np.float32)

    images, w_all, skin_means = [], [], []
    carrier_img: np.ndarray | None = None
    for face, (we, wm) in zip(faces, weights):
        to_src = _similarity(mean, face.points)
        # Outside the face the photo moves rigidly, so hair keeps its shape; the gap absorbs the mesh.
        src = np.vstack([face.points, _apply(to_src, dst[_N_MESH:])]).astype(np.float32)
        patch, _, (x0, y0, x1, y1) = warp_face(face.image, src, dst, tri, shape)
        warped = np.zeros((size, size, 3), np.uint8)
        warped[y0:y1, x0:x1] = patch
        if face.carrier:
            # Hair and clothes are warped through the outline and rings only: the thin triangles along the
            # mesh edge would zigzag a strand of hair that crosses them. Inside, the average face goes.
            pts = np.concatenate([oval, np.arange(_N_MESH, len(dst))])
            c_tri = triangulate(dst[pts])
            carrier_img = np.zeros((size, size, 3), np.uint8)
            cp, _, (cx0, cy0, cx1, cy1) = warp_face(face.image, src[pts], dst[pts], c_tri, shape)
            carrier_img[cy0:cy1, cx0:cx1] = cp
        # Match detail: a face upsampled from a small photo is soft; soften sharper ones to the same level
        # so one high-resolution source does not dominate the look of the average.
        own_iod = np.linalg.norm(face.points[_RIGHT_EYE].mean(0) - face.points[_LEFT_EYE].mean(0))
        native_iod = own_iod / face.upscale
        sigma = 0.5 * np.sqrt(max(0.0, (iod / 50.0) ** 2 - (iod / native_iod) ** 2))
        if sigma > 0.3:
            warped = cv2.GaussianBlur(warped, (0, 0), sigma)
        images.append(warped.astype(np.float32))
        face_skin = skin * below_glasses if face.glasses else skin
        skin_means.append(images[-1][face_skin > 0].mean(0))

        # Where the photo ran out (a crop past its edge), the repeated edge pixels must not count.
        vp, _, (vx0, vy0, vx1, vy1) = warp_face(face.valid, src, dst, tri, shape)
        w = np.zeros(shape, np.float32)
        w[vy0:vy1, vx0:vx1] = vp
        w = cv2.GaussianBlur(np.clip(2.0 * w - 1.0, 0, 1), (0, 0), soft)
        w *= 1.0 - eye_region * (1.0 - we)
        if face.glasses:  # frames and lenses reach brows, temples and cheeks: only the face below counts
            w *= below_glasses
        if face.hat:
            w *= below_brows
        w *= 1.0 - mouth_region * (1.0 - wm)
        w_all.append(w)
    if carrier_img is None:
        raise MediaError("no sample photo can carry the demo persona's face: check the mediapipe install")

    # Colour normalisation, white-balance style: per-channel gains bring every face's mean skin colour to
    # one target (a greyscale photo is tinted the same way). Gains keep highlights and shadows in hue,
    # where shifting Lab means turns the paler parts of a red-lit face green. The target is the mean
    # skin of the colour photos, which is close to the warm neck of the carrier.
    means = np.array(skin_means)
    colour = np.ptp(means, axis=1) > 4.0
    target = means[colour].mean(0)
    stack = np.stack([img * (target / np.maximum(m, 1.0)) for img, m in zip(images, means)])
    w_stack = np.stack(w_all)[..., None]
    avg = (stack * w_stack).sum(0) / np.maximum(w_stack.sum(0), 1e-6)
    # Averaging softens detail; sharpen the face a little and the eyes more (eyes are what people read).
    amount = (0.7 + 0.9 * eye_region)[..., None]
    avg = avg + amount * (avg - cv2.GaussianBlur(avg, (0, 0), 1.5))

    return _Blend(avg.astype(np.float32), face_mask, carrier_img, mean)


def composite_face(size: int = PHOTO_SIZE) -> np.ndarray:
    """A plausible portrait of nobody, BGR size x size: the averaged face on the carrier's head and
    shoulders, with the hair recoloured and the carrier's room replaced by a plain studio backdrop."""
    return _studio_portrait(_blend_faces(size))


# ----------------------------------------------------------------------------------------------------------
# the studio portrait around the composite face
#
# The carrier photo is a crop of a group photo of real people: its room, the people behind and the
# carrier's own hair colour would make the persona read as a crop of that photo. Only the carrier's
# silhouette (hair shape, neck, shoulders) is kept; the room becomes a plain studio backdrop and the hair
# another natural shade.

# Backdrop colours, BGR: a soft grey-blue, lighter behind the head as under a studio light.
_BACKDROP_TOP = np.array([178.0, 166.0, 152.0])
_BACKDROP_BOTTOM = np.array([128.0, 116.0, 104.0])
# Hair, CIE Lab as OpenCV scales it (L 0..255, a and b offset by 128): a medium-dark brown.
_HAIR_LAB = np.array([84.0, 141.0, 152.0])


def _segmentation(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Selfie-segmentation mask (every person), pose-segmentation mask (one person) and pose landmarks.

    The selfie model gives clean outlines but takes in anyone near the carrier (a shoulder behind, an arm
    beside the hair); the pose model follows one person only, with a blobby outline. Together they give
    the carrier alone. The pose parts are None when the pose model finds nobody.
    """
    import mediapipe as mp

    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    h, w = image.shape[:2]
    with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as seg:
        selfie = np.clip(seg.process(rgb).segmentation_mask.astype(np.float32), 0.0, 1.0)
    # model_complexity 1: the "full" landmark model ships in the wheel (2 would be downloaded).
    pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=True)
    with pose:
        result = pose.process(rgb)
    if result.pose_landmarks is None or result.segmentation_mask is None:
        return selfie, None, None
    marks = np.array([(p.x * w, p.y * h) for p in result.pose_landmarks.landmark], np.float64)
    return selfie, np.clip(result.segmentation_mask.astype(np.float32), 0.0, 1.0), marks


def _face_box(mesh: np.ndarray) -> tuple[float, float, float, float, float]:
    """(centre x, top y, chin y, width, height) of the face outline: the yardstick for priors below."""
    from filters.face.landmarks import face_oval_indices

    ring = mesh[face_oval_indices()]
    (x0, y0), (x1, y1) = ring.min(0), ring.max(0)
    return float((x0 + x1) / 2), float(y0), float(y1), float(x1 - x0), float(y1 - y0)


def _person_alpha(carrier: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    """Soft 0..1 matte of the carrier alone (head, hair, neck, shoulders) in the portrait frame.

    Segmentation masks give the trimap (sure person, sure room, unsure between), GrabCut decides the
    unsure band by colour, and a guided filter turns the hard cut into a soft edge that follows the
    strands of hair, so the new backdrop meets the hair without a halo or a cut-out look.
    """
    from filters.face.landmarks import face_oval_indices

    h, w = carrier.shape[:2]
    selfie, pose, marks = _segmentation(carrier)
    cx, top, chin, fw, fh = _face_box(mesh)
    if pose is not None and np.hypot(*(marks[0] - mesh[1])) > 0.5 * fw:
        pose = marks = None  # the pose model found someone else: do without it
    if pose is None:
        pose = np.ones_like(selfie)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # Where the carrier can be: the head and hair within a rounded box around the face (shoulder-length
    # hair hangs straight, so the box has flat sides), and the body below the neck.
    head = (np.abs((xx - cx) / (0.9 * fw)) ** 4
            + np.abs((yy - (top + chin) / 2 + 0.1 * fh) / (1.0 * fh)) ** 4) <= 1.0
    if marks is not None:
        shoulders = marks[[11, 12]]
        reach = 0.25 * fw
        body = ((yy > shoulders[:, 1].min() - 0.2 * fw)
                & (xx > shoulders[:, 0].min() - reach) & (xx < shoulders[:, 0].max() + reach))
    else:
        body = yy > chin + 0.3 * fh
    allowed = head | body
    both = np.minimum(selfie, pose)
    face = _poly_mask((h, w), _grow(mesh[face_oval_indices()], 0.95)) > 0.5
    core = cv2.erode(((both > 0.9) & allowed).astype(np.uint8), cv2.getStructuringElement(
        cv2.MORPH_ELLIPSE, (15, 15))) > 0
    trimap = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
    trimap[(both > 0.5) & allowed] = cv2.GC_PR_FGD
    trimap[(selfie < 0.15) | (pose < 0.4) | ~allowed] = cv2.GC_BGD
    trimap[core | face] = cv2.GC_FGD
    bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.setRNGSeed(0)
    cv2.grabCut(carrier, trimap, None, bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)
    hard = ((trimap == cv2.GC_FGD) | (trimap == cv2.GC_PR_FGD)).astype(np.uint8)
    # A hair outline is smooth at this scale: spikes and notches are the room, and are dropped.
    k = max(3, (w // 64) | 1)
    round_k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    hard = cv2.morphologyEx(cv2.morphologyEx(hard, cv2.MORPH_OPEN, round_k), cv2.MORPH_CLOSE, round_k)
    hard = (cv2.GaussianBlur(hard.astype(np.float32), (0, 0), w / 100) > 0.5).astype(np.float32)
    # Keep the piece that holds the face: specks of the room that GrabCut let through go.
    n, labels = cv2.connectedComponents(hard.astype(np.uint8))
    if n > 2:
        keep = labels == labels[int(mesh[1][1]), int(mesh[1][0])]
        hard *= keep
    alpha = cv2.ximgproc.guidedFilter(carrier, hard, max(2, w // 128), (0.1 * 255) ** 2)
    return np.clip(alpha, 0.0, 1.0).astype(np.float32)


def _neck_mask(mesh: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Float 0..1: the neck under the jaw, as wide as the jaw a little above the chin, down to the frame.

    Shadowed neck skin has much the colour of blonde hair, so the neck is kept out of the hair by place.
    """
    from filters.face.landmarks import face_oval_indices

    ring = mesh[face_oval_indices()]
    _, _, chin, _, fh = _face_box(mesh)
    level = chin - 0.2 * fh
    jaw = ring[ring[:, 1] >= level]
    near = ring[np.abs(ring[:, 1] - level) < 0.08 * fh]
    centre, half = float(near[:, 0].mean()), 0.45 * float(np.ptp(near[:, 0]))
    left, right = centre - half, centre + half
    h = shape[0]
    poly = np.vstack([jaw, [(left, level), (right, level), (left, h + 10), (right, h + 10)]])
    return _poly_mask(shape, poly, blur=0.02 * fh)


def _hair_weight(
    person: np.ndarray, alpha: np.ndarray, face_mask: np.ndarray, mesh: np.ndarray
) -> np.ndarray:
    """Float 0..1: how much each pixel is hair, for the recolouring.

    By place, hair is the person minus the face and the neck. Only where skin or clothes can also be
    (the forehead above the face outline, the rim of the face at the temples, the chest and shoulders
    below the chin) colour decides too: the colours of the strands beside the cheeks against those of
    the nearby skin, and, below the chin, a floor for colours far from any hair (a dark top, a trim).
    Elsewhere (crown, sides) place alone decides, so the pale highlights of the hair are dyed as well.
    """
    from filters.face.landmarks import face_oval_indices

    lab = cv2.cvtColor(np.clip(person, 0, 255).astype(np.uint8), cv2.COLOR_BGR2LAB).astype(np.float32)
    h, w = alpha.shape
    cx, top, chin, fw, fh = _face_box(mesh)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    eye_y = float(mesh[[33, 263], 1].mean())
    strands = (alpha > 0.95) & (np.abs(xx - cx) > 0.55 * fw) & (yy > eye_y) & (yy < chin)
    neck = _neck_mask(mesh, (h, w))
    # The skin that can be mistaken for hair is what the light reaches: the forehead and the chest. The
    # shadowed skin between (cheeks, neck) is left out: it is as warm as hair and is kept out by place.
    brow_y = float(mesh[[70, 63, 105, 66, 107, 336, 296, 334, 293, 300], 1].min())
    skin = (((face_mask > 0.99) & (yy < brow_y - 0.03 * fh))
            | ((neck > 0.99) & (alpha > 0.95) & (yy > chin + 0.2 * fh)))
    if strands.sum() < 200 or skin.sum() < 200:
        raise MediaError("the demo persona's carrier photo shows too little hair or skin to recolour")

    def stats(sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        v = lab[sel]
        return v.mean(0), np.cov(v.T) + np.eye(3) * 4.0

    hair_mean, hair_cov = stats(strands)
    d = lab - hair_mean
    d_hair = np.einsum("...i,ij,...j->...", d, np.linalg.inv(hair_cov), d)
    hair_like = np.clip((60.0 - d_hair) / 20.0, 0.0, 1.0)  # a dark top or a light trim is far beyond

    def hair_not(sel: np.ndarray, gate: np.ndarray | float = 1.0) -> np.ndarray:
        """Hair rather than the skin in `sel`: a linear discriminant, so colours beyond the hair's own
        (a more saturated strand) count as hair too."""
        skin_mean, skin_cov = stats(sel)
        axis = np.linalg.solve((hair_cov + skin_cov) / 2, hair_mean - skin_mean)
        score = (lab - (hair_mean + skin_mean) / 2) @ axis
        p = 1.0 / (1.0 + np.exp(-np.clip(score, -30, 30)))
        return cv2.GaussianBlur(p * gate, (0, 0), 1.5)

    # Strands reach into the rim of the face outline at the temples: there they are told from the face's
    # own skin. The middle of the face is never hair, nor is its rim below the eyes.
    inner = _poly_mask((h, w), _grow(mesh[face_oval_indices()], 0.85), blur=0.02 * fh)
    above_eyes = np.clip((eye_y - yy) / (0.1 * fh), 0.0, 1.0)
    rim = np.clip(face_mask - inner, 0.0, 1.0) * above_eyes
    face_skin = (inner > 0.99) & ~((yy > brow_y - 0.03 * fh) & (yy < float(mesh[[1], 1].mean())))
    lower, upper = top + 0.1 * fh, top - 0.2 * fh  # the forehead skin above the outline's top
    forehead = _poly_mask((h, w), np.array([(cx - 0.45 * fw, lower), (cx + 0.45 * fw, lower),
                                            (cx + 0.4 * fw, upper), (cx - 0.4 * fw, upper)]), blur=0.03 * fh)
    body = np.clip((yy - chin) / (0.1 * fh), 0.0, 1.0)
    # Clothes are only below the chin: there, colours far from any hair are not hair.
    colour = (forehead * hair_not(skin) + body * hair_not(skin, hair_like)
              + np.clip(1.0 - forehead - body, 0.0, 1.0))
    colour = rim * hair_not(face_skin) + (1.0 - rim) * colour
    place = alpha * (1.0 - np.maximum(inner, face_mask * (1.0 - above_eyes))) * (1.0 - neck)
    return np.clip(place * colour, 0.0, 1.0).astype(np.float32)


def _recolour_hair(person: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Dye the hair to _HAIR_LAB: lightness scaled (shading and highlights stay), chroma set to brown."""
    if not (weight > 0.5).any():
        return person
    lab = cv2.cvtColor(np.clip(person, 0, 255).astype(np.uint8), cv2.COLOR_BGR2LAB).astype(np.float32)
    mean = lab[weight > 0.5].mean(0)
    dyed = np.empty_like(lab)
    dyed[..., 0] = lab[..., 0] * (_HAIR_LAB[0] / max(float(mean[0]), 1.0))
    dyed[..., 1:] = _HAIR_LAB[1:] + 0.3 * (lab[..., 1:] - mean[1:])
    dyed_bgr = cv2.cvtColor(np.clip(dyed, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR).astype(np.float32)
    wt = weight[..., None]
    return person * (1 - wt) + dyed_bgr * wt


def _clean_edges(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The person's own colours where the matte is soft, so no trace of the old room rims the hair.

    A soft edge pixel mixes hair with the room behind it; laid on the new backdrop it would show the old
    room as a halo. There the colour is taken from the solid person nearby instead (normalised blur).
    """
    solid = (alpha > 0.97).astype(np.float32)
    sigma = max(2.0, image.shape[0] / 128)
    spread = cv2.GaussianBlur(image * solid[..., None], (0, 0), sigma)
    weight = cv2.GaussianBlur(solid, (0, 0), sigma)[..., None]
    near = spread / np.maximum(weight, 1e-4)
    keep = np.clip((alpha - 0.6) / 0.37, 0.0, 1.0)[..., None]
    keep = np.where(weight > 1e-3, keep, 1.0)
    return image * keep + near * (1 - keep)


def _mirrored_shoulder(
    image: np.ndarray, alpha: np.ndarray, mesh: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The fuller shoulder mirrored about the neck, (image, alpha), to stand behind a cut-off one.

    A carrier at the edge of its group photo has one shoulder cut off by the frame; with the room gone
    that reads as a missing shoulder. The other one, mirrored, goes behind the person layer, so only
    what the carrier lacks shows. Alpha is all zero when both shoulders are there.
    """
    h, w = alpha.shape
    _, _, chin, fw, fh = _face_box(mesh)
    axis = float(mesh[152, 0])  # the chin: the neck hangs below it
    band = np.clip((np.arange(h, dtype=np.float32) - chin - 0.1 * fh) / (0.1 * fh), 0.0, 1.0)[:, None]
    cols = np.arange(w, dtype=np.float32)[None, :]
    side = np.clip((np.abs(cols - axis) - 0.3 * fw) / (0.1 * fw), 0.0, 1.0)
    body = (alpha * band * side) > 0.5
    xs = np.nonzero(body.any(axis=0))[0]
    none = (image, np.zeros_like(alpha))
    if xs.size == 0:
        return none
    left, right = axis - xs.min(), xs.max() - axis
    if abs(left - right) < 0.15 * fw:
        return none
    # x' = 2 * axis - x, as an affine map; the mirrored side of the frame beyond the edge stays empty.
    flip = np.float32([[-1, 0, 2 * axis], [0, 1, 0]])
    mirrored = cv2.warpAffine(image, flip, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    m_alpha = cv2.warpAffine(alpha * band * side, flip, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0)
    # Only the short side receives: the long side keeps its own shoulder.
    short = (cols > axis) if right < left else (cols < axis)
    return mirrored, (m_alpha * short).astype(np.float32)


def _studio_backdrop(size: int) -> np.ndarray:
    """A plain portrait backdrop, float32 BGR: vertical grey-blue gradient, light spot, soft vignette."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    t = yy[..., None]
    bg = _BACKDROP_TOP * (1 - t) + _BACKDROP_BOTTOM * t
    r2 = (xx - 0.5) ** 2 + (yy - 0.35) ** 2
    bg = bg * (0.86 + 0.2 * np.exp(-r2 / 0.12))[..., None]
    # Faint grain so the backdrop has the texture of the photo in front of it, not of a graphic.
    noise = np.random.default_rng(7).normal(0.0, 2.0, (size, size)).astype(np.float32)
    return bg + cv2.GaussianBlur(noise, (0, 0), 0.8)[..., None]


def _studio_portrait(blend: _Blend) -> np.ndarray:
    """The composite face on the carrier's head and shoulders in front of a studio backdrop, BGR uint8."""
    size = blend.carrier.shape[0]
    fm = blend.face_mask[..., None]
    person = blend.face * fm + blend.carrier.astype(np.float32) * (1 - fm)
    alpha = np.maximum(_person_alpha(blend.carrier, blend.mesh), blend.face_mask)
    person = _recolour_hair(person, _hair_weight(person, alpha, blend.face_mask, blend.mesh))
    person = _clean_edges(person, alpha)
    out = _studio_backdrop(size)
    shoulder, s_alpha = _mirrored_shoulder(person, alpha, blend.mesh)
    out = shoulder * s_alpha[..., None] + out * (1 - s_alpha[..., None])
    a = alpha[..., None]
    out = person * a + out * (1 - a)
    return np.clip(out, 0, 255).astype(np.uint8)


