"""A persona texture from several views of a clip: each texel from the one view that sees it best.

Averaging texels across views (atlas.merge) softens the texture: every view is resampled differently, small
misalignments between views smear fine detail, and a mean of a sharp and a soft texel is soft. Here the
clip's best frontal frame is the base, unwrapped exactly as a persona made from that frame alone would be
(its far side mirror-filled), and another view takes over a texel where it sees that texel more squarely
than the base does (the far cheek, the side of the nose; the base is favoured), after its colours are
matched to the base's where both see the face well (exposure and white balance drift during a clip). The
choice is a soft per-texel winner (weights are each view's claim against the strongest, to a high power)
with a narrow feather, so where one view clearly sees best its detail is kept whole, not averaged;
a softer view (motion blur, focus) claims texels less.
The neutral 3-D shape is averaged over the views (likeness.from_views) only where the base sees the face
poorly: the mesher's depth on a turned face is less sure, and measured through the swap (dlib distance,
benchmarks/bench_clip_persona.py) the plain average of the views' shapes cost 0.05 against the best frame's,
and once the swap drew her face out to the operator's outline, even the average at the base's grazing
points (cosine 0.1-0.3: the jaw and the face's edge) cost 0.017 on Grace Hopper; so the base's own shape
stands everywhere it sees at all, and the average fills only what it does not see.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from filters.face.atlas import ATLAS_PX, MIRROR_SHARE, SHARPNESS, FaceAtlas, merge, view
from filters.face.blend import blur_mask
from filters.face.color import transfer_color
from filters.face.face3d import point_facing, symmetrised
from filters.face.likeness import Likeness, View, face_sharpness, from_views

BASE_FAVOUR = 2.0  # the base's claim counts double: another view outweighs it from about 1.2x the base's cosine
FEATHER = 0.012  # face widths of feather at the border between views: no seam, little softening
MATCH_SEEN = 0.6 ** SHARPNESS  # texels both views see at least this squarely set the colour match
MIN_MATCH_TEXELS = 400
WINNER_POWER = 8.0  # claims (facing ** SHARPNESS) against the strongest, to this power: a soft per-texel winner
SHARP_POWER = 4.0  # a softer view's claim is scaled by (its sharpness / the base's) ** this
SHAPE_SEEN = 0.1  # a point the base sees at least this squarely (cosine, about 84 degrees off) keeps its own 3-D shape


def merge_views(views: list[View], base: int, px: int = ATLAS_PX) -> Likeness:
    """The likeness of several views of one person, `views[base]` (the best frontal frame) as the base."""
    likeness = from_views(views, px)  # the neutral shape averaged over the views, yaws, face size
    facing = point_facing(views[base].mesh)
    own = symmetrised(views[base].pose.undo(views[base].mesh), facing)
    # Where the base sees a point squarely its own shape stands; where it sees it poorly, the views' average.
    trust = np.clip(facing / SHAPE_SEEN, 0.0, 1.0)[:, None]
    shape = own * trust + likeness.shape * (1.0 - trust)
    return dataclasses.replace(likeness, atlas=best_view_atlas(views, base, px), shape=shape)


def best_view_atlas(views: list[View], base: int, px: int = ATLAS_PX) -> FaceAtlas:
    """The base view's own atlas, with texels it sees poorly taken from the view that sees them best."""
    atlases = [view(v.image, v.mesh, px) for v in views]
    own = atlases[base]
    texture = merge([own]).texture.astype(np.float32)  # exactly the single-frame persona's texture
    if len(views) == 1:
        return merge([own])
    sharp = np.array([face_sharpness(v) for v in views])
    base_sharp = max(float(sharp[base]), 1e-6)
    # Claims: the base (seen directly, favoured; or its mirror image, as its own atlas already blends),
    # then every other view directly and mirrored, each scaled by how sharp that view is.
    claims = [np.maximum(own.weight * BASE_FAVOUR, own.weight[:, ::-1] * MIRROR_SHARE)]
    sources: list[np.ndarray | None] = [None]
    valid: list[np.ndarray | None] = [None]
    for k, a in enumerate(atlases):
        if k == base:
            continue
        soft = min(1.0, float(sharp[k]) / base_sharp) ** SHARP_POWER
        matched = _match_colours(a, own).astype(np.float32)
        claims += [a.weight * soft, a.weight[:, ::-1] * MIRROR_SHARE * soft]
        sources += [matched, matched[:, ::-1]]
        drawn = _drawn(a)
        valid += [drawn, drawn[:, ::-1]]
    # Each texel's weights: every claim against the strongest claim there, to a high power (a view that sees
    # it 10 % less squarely gets about 3 % of it), a narrow feather, and only where that view drew the face.
    stack = np.stack(claims)
    strongest = np.maximum(stack.max(axis=0), 1e-12)
    sigma = FEATHER * px
    shares = []
    for k, claim in enumerate(claims):
        share = blur_mask(((claim / strongest) ** WINNER_POWER).astype(np.float32), sigma)
        # The base keeps a sliver everywhere: texels no view saw stay its own (mirror- and edge-filled) ones.
        shares.append(np.maximum(share, 1e-4) if k == 0 else share * valid[k])
    total = np.maximum(np.sum(shares, axis=0), 1e-6)
    out = texture * (shares[0] / total)[..., None]
    for share, source in zip(shares[1:], sources[1:]):
        out += source * (share / total)[..., None]
    seen = np.max([a.weight for a in atlases], axis=0)
    return FaceAtlas(np.clip(out + 0.5, 0, 255).astype(np.uint8), seen, own.points)


def _match_colours(other: FaceAtlas, base: FaceAtlas) -> np.ndarray:
    """`other`'s texture with its Lab mean and spread matched to the base's where both see the face well."""
    painted = _drawn(other) & _drawn(base)  # the weight maps are blurred past what each warp drew (black)
    both = ((other.weight >= MATCH_SEEN) & (base.weight >= MATCH_SEEN) & painted).astype(np.uint8)
    if int(both.sum()) < MIN_MATCH_TEXELS:
        both = ((other.weight > 0.05) & (base.weight > 0.05) & painted).astype(np.uint8)
    if int(both.sum()) < MIN_MATCH_TEXELS:
        return other.texture
    return transfer_color(other.texture, base.texture, both)


def _drawn(atlas: FaceAtlas) -> np.ndarray:
    """Texels the view's warp drew (its weight map is blurred past them, where its texture is black)."""
    drawn = atlas.texture.any(axis=2).astype(np.uint8)
    return cv2.erode(drawn, np.ones((3, 3), np.uint8)) > 0
