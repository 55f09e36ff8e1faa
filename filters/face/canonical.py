"""Building the canonical 3-D face (`canonical_face.npz`) that the 3-D face modes pose, unwrap and render.

MediaPipe 0.10.21's wheel ships the face mesh model but not its canonical face model, so evercall makes its
own once, from the real faces that installed packages ship (scikit-image's astronaut, matplotlib's Grace
Hopper, insightface's Tom Hanks crop and the six people of its `t1.jpg`): each face's 3-D mesh is turned
to face the camera by its own plane of symmetry, made symmetric, scaled to a face width of 1, and the
faces are averaged. The mean of nine people's geometry is nobody's likeness. Run
`python -m filters.face.canonical` to rebuild the file; the filters only read it (filters/face/face3d.py).

Stored: `points` (468, 3) the mean frontal face (x right, y down, z away from the camera, face width 1,
centred on the nose bridge), `mirror` (468,) each point's mirror image across the face's midline.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

from filters.face.landmarks import N_MESH_POINTS, FaceMesher, face_oval_indices

OUT = Path(__file__).with_name("canonical_face.npz")
# Mesh points on the face's midline (forehead, nose, lips, chin): they fix the first guess of the plane.
MIDLINE = (10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 164, 0, 11, 12, 13, 14, 15, 16, 17, 18,
           200, 199, 175, 152)
NOSE_BRIDGE = 168


# insightface's t1.jpg: each person's face box (x, y, side) as dlib's detector finds it, left to right.
T1_FACES = ((67, 283, 109), (275, 176, 90), (450, 295, 108), (724, 367, 109), (870, 67, 130), (1118, 283, 109))


def package_faces() -> dict[str, np.ndarray]:
    """Head-and-shoulders photos (face about 200 px wide) of the real people installed packages ship, by name:
    scikit-image's astronaut, matplotlib's Grace Hopper, insightface's Tom Hanks crop (scaled up 3x) and
    the six people of its t1.jpg (each cropped and scaled up 2x); insightface's are left out if it is not
    installed. Also used by the likeness benchmark, as personas and as operators."""
    import matplotlib
    import skimage.data

    grace = Path(matplotlib.__file__).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"
    faces = {"astronaut": cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR),
             "grace_hopper": cv2.imread(str(grace))}
    spec = importlib.util.find_spec("insightface")
    if spec is not None and spec.submodule_search_locations:
        images = Path(list(spec.submodule_search_locations)[0]) / "data" / "images"
        hanks = cv2.imread(str(images / "Tom_Hanks_54745.png"))
        faces["tom_hanks"] = cv2.resize(hanks, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
        group = cv2.imread(str(images / "t1.jpg"))
        for k, (x, y, side) in enumerate(T1_FACES, start=1):
            x0, y0 = max(x - side, 0), max(y - side, 0)
            crop = group[y0 : y + 2 * side, x0 : x + 2 * side]
            faces[f"t1_{k}"] = cv2.resize(crop, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    return faces


def mirror_pairs(points: np.ndarray) -> np.ndarray:
    """Each point's mirror partner on a roughly frontal mesh (468, 3): nearest point to its reflection."""
    frame = symmetry_frame(points, None)
    p = (points - points[MIDLINE, :].mean(axis=0)) @ frame.T
    q = p * (-1.0, 1.0, 1.0)
    d = np.linalg.norm(p[None, :, :] - q[:, None, :], axis=2)
    return np.argmin(d, axis=1).astype(np.int32)


def symmetry_frame(points: np.ndarray, mirror: np.ndarray | None) -> np.ndarray:
    """Rotation (3x3, rows x y z) that turns the mesh to face the camera: x across the plane of symmetry
    (from the mirror pairs, or the midline points' plane without them), y from the nose bridge to the chin."""
    if mirror is None:
        mid = points[list(MIDLINE)] - points[list(MIDLINE)].mean(axis=0)
        x = np.linalg.svd(mid)[2][2]
    else:
        d = points - points[mirror]
        x = np.linalg.eigh(d.T @ d)[1][:, -1]
    if (points[454] - points[234]) @ x < 0:  # x toward the image's right, as the face's own left is
        x = -x
    y = points[152] - points[NOSE_BRIDGE]
    y -= (y @ x) * x
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    return np.stack([x, y, z])


def frontal(points: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """The mesh turned to face the camera, made symmetric, centred on the nose bridge, face width 1."""
    frame = symmetry_frame(points, mirror)
    p = points @ frame.T
    p = (p + p[mirror] * (-1.0, 1.0, 1.0)) / 2
    p -= p[NOSE_BRIDGE]
    width = float(np.ptp(p[face_oval_indices(), 0]))
    return p / width


def build() -> dict[str, np.ndarray]:
    meshes = []
    with FaceMesher(still=True, depth=True) as mesher:
        for image in package_faces().values():
            found = mesher(image)
            if found is not None:
                meshes.append(found[:N_MESH_POINTS].astype(np.float64))
    if len(meshes) < 3:
        raise RuntimeError("too few package faces found to build the canonical face")
    mirror = mirror_pairs(meshes[0])
    # Make the pairing an involution: a point whose partner does not point back sits on the midline.
    mirror = np.where(mirror[mirror] == np.arange(len(mirror)), mirror, np.arange(len(mirror)))
    shapes = [frontal(m, mirror) for m in meshes]
    mean = np.mean(shapes, axis=0)
    mean = (mean + mean[mirror] * (-1.0, 1.0, 1.0)) / 2
    return {"points": mean.astype(np.float64), "mirror": mirror, "faces": np.int32(len(shapes))}


def main() -> None:
    data = build()
    np.savez_compressed(OUT, **data)
    print(f"wrote {OUT} from {int(data['faces'])} faces")


if __name__ == "__main__":
    main()
