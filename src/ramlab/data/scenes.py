"""Scenes: MNIST digits placed on a larger canvas, with clutter, rotation, scale and noise.

One parametric generator (`SceneSpec` + `generate_scenes`) builds every dataset of the study:

    canvas = max(digit placed at (x, y), k×k crops of other digits at random places) + noise

It is vectorised over scenes (NumPy sliding-window views, torch `grid_sample` for the
affine warp), deterministic for a given spec, digits and seed, and records each digit's
tight bounding box `(x0, y0, x1, y1)` in pixels with x1, y1 exclusive: the digit's non-zero
pixels are exactly those of `canvas[y0:y1, x0:x1]` that come from the digit.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from dataclasses import asdict, dataclass, field

import numpy as np

from ramlab.errors import RamlabError

DIGIT = 28


@dataclass(frozen=True)
class SceneSpec:
    """How to build a scene from a digit. Every field is part of the cache key."""

    canvas: int = 60
    """Side of the square canvas in pixels."""
    max_offset: int | None = None
    """Placement window: the digit's centre lies within ±max_offset px of the canvas centre
    on each axis (clipped so its `footprint` stays inside). None: anywhere on the canvas."""
    clutter_count: int = 0
    """Number of clutter pieces: k×k crops of other random digits of the same split."""
    clutter_size: int = 8
    """Side k of a clutter piece in pixels."""
    rotation: tuple[float, float] = (0.0, 0.0)
    """Rotation range in degrees, drawn uniformly per digit (counter-clockwise positive)."""
    scale: tuple[float, float] = (1.0, 1.0)
    """Scale range, drawn uniformly per digit (1.0: the 28×28 digit as is)."""
    noise: float = 0.0
    """Standard deviation of additive Gaussian noise on the [0, 1] intensity scale."""

    def __post_init__(self) -> None:
        # One type per field: equal specs must hash to one key (file names, scene seeds).
        object.__setattr__(self, "rotation", tuple(float(v) for v in self.rotation))
        object.__setattr__(self, "scale", tuple(float(v) for v in self.scale))
        object.__setattr__(self, "noise", float(self.noise))
        for name in ("canvas", "clutter_count", "clutter_size"):
            object.__setattr__(self, name, _whole(name, getattr(self, name)))
        if self.max_offset is not None:
            object.__setattr__(self, "max_offset", _whole("max_offset", self.max_offset))
        if self.canvas < 1:
            raise RamlabError(f"scene canvas must be positive, got {self.canvas}")
        if self.max_offset is not None and self.max_offset < 0:
            raise RamlabError(f"scene max_offset must be >= 0 or None, got {self.max_offset}")
        if self.clutter_count < 0:
            raise RamlabError(f"scene clutter_count must be >= 0, got {self.clutter_count}")
        if not 1 <= self.clutter_size <= DIGIT or self.clutter_size > self.canvas:
            raise RamlabError(
                f"scene clutter_size must be in 1..{min(DIGIT, self.canvas)}, got {self.clutter_size}"
            )
        for key in ("rotation", "scale"):
            lo_hi = getattr(self, key)
            if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1]:
                raise RamlabError(f"scene {key} must be a range [low, high], got {list(lo_hi)}")
        if self.scale[0] <= 0:
            raise RamlabError(f"scene scale must be positive, got {list(self.scale)}")
        if self.noise < 0:
            raise RamlabError(f"scene noise must be >= 0, got {self.noise}")
        # The scaled digit must fit; a rotation may clip the (blank) corners of its 28×28 box.
        needed = math.ceil(DIGIT * self.scale[1] - 1e-9)
        if needed > self.canvas:
            raise RamlabError(
                f"a digit at scale {self.scale[1]} needs {needed} px but the canvas is "
                f"{self.canvas} px; use a larger canvas or a smaller scale"
            )

    @property
    def warped(self) -> bool:
        return self.rotation != (0.0, 0.0) or self.scale != (1.0, 1.0)

    @property
    def draws_nothing(self) -> bool:
        """Whether the scenes are the same for every seed (no warp, clutter or noise, and one
        place for the digit, as in 28×28 MNIST)."""
        if self.warped or self.clutter_count or self.noise:
            return False
        low, high = placement_range(self, self.footprint)
        return low == high

    @property
    def footprint(self) -> int:
        """Side of the square that placement keeps on the canvas: the digit's 28×28 box at the
        top of the scale range. A rotation turns the digit inside it and leaves the placement
        window as it is (only the box's blank corners leave it; the canvas crops them)."""
        return min(self.canvas, math.ceil(DIGIT * self.scale[1]))

    @property
    def patch_size(self) -> int:
        """Side of the square patch that holds the (warped) digit: the footprint, widened
        evenly (so that the two share a centre pixel-exactly) to hold every rotation."""
        if not self.warped:
            return DIGIT
        angle = max(abs(self.rotation[0]), abs(self.rotation[1]), 0.0)
        spread = 1.0
        if angle > 0:
            spread = max(
                abs(math.cos(math.radians(a))) + abs(math.sin(math.radians(a)))
                for a in np.linspace(0, min(angle, 45.0), 46)
            )
        turned = math.ceil(DIGIT * self.scale[1] * spread)
        return self.footprint + 2 * math.ceil(max(0, turned - self.footprint) / 2)

    def key(self) -> str:
        """A short stable hash of the spec, for cache file names (and the scenes' seeds)."""
        fields = asdict(self)
        if self.rotation != (0.0, 0.0):
            # Rotated digits were placed by their wider patch before: new scenes, new key.
            fields["placed_by"] = "footprint"
        text = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True, eq=False)  # an array field: no generated ==
class Subset:
    """Which scenes of a whole split of `of` scenes a subset holds: `rows` (N,), their
    positions in it. An evaluation draws a scene's random numbers (a random first glimpse, a
    random policy's places, sampling noise) for the whole split and takes the subset's rows,
    so a limited evaluation or a figure gives each scene those the whole split's evaluation
    gives it."""

    rows: np.ndarray
    of: int

    @classmethod
    def kept(cls, keep: slice | np.ndarray, of: int) -> Subset:
        """The subset that indexing a split of `of` scenes with `keep` (a slice or indices)
        keeps."""
        return cls(np.arange(of)[keep], of=of)


@dataclass
class Scenes:
    """A split of scenes. images (N, H, W) uint8; labels (N,) int64; bboxes (N, 4) int32.
    subset: which scenes of the whole split these are (a limited evaluation's); None: all of
    them, in order."""

    images: np.ndarray
    labels: np.ndarray
    bboxes: np.ndarray
    spec: SceneSpec = field(default_factory=SceneSpec)
    subset: Subset | None = None

    def __len__(self) -> int:
        return len(self.labels)


def _whole(name: str, value: object) -> int:
    """A whole-number field as an int (60.0 is 60), or a RamlabError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value).is_integer():
        raise RamlabError(f"scene {name} must be a whole number, got {value!r}")
    return int(value)


def _windows(canvas: np.ndarray, size: int) -> np.ndarray:
    """A writable view (N, H-size+1, W-size+1, size, size) of every size×size window."""
    return np.lib.stride_tricks.sliding_window_view(canvas, (size, size), axis=(1, 2), writeable=True)


def _warp(digits: np.ndarray, spec: SceneSpec, rng: np.random.Generator) -> np.ndarray:
    """Rotate and scale each digit about its centre into a patch_size² patch (N, P, P) uint8."""
    import torch  # here, not at the top: the specs and shifts are read without torch (the report)
    import torch.nn.functional as F

    n, size = len(digits), spec.patch_size
    angles = np.radians(rng.uniform(*spec.rotation, size=n))
    scales = rng.uniform(*spec.scale, size=n)
    out = np.empty((n, size, size), dtype=np.uint8)
    chunk = 4096
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        # In float64 (a copy: MNIST's arrays are read-only views, which torch warns about):
        # float32's rounding depends on the CPU's vector unit, and pixels near x.5 then
        # round differently on another machine; float64's differences are far below the
        # 1e-6 snap before rounding, so the scenes are the same everywhere.
        src = torch.from_numpy(digits[start:stop].astype(np.float64)).unsqueeze(1)
        a = torch.from_numpy(angles[start:stop])
        s = torch.from_numpy(scales[start:stop])
        # affine_grid maps output coords (normalised to the patch) to input coords
        # (normalised to the 28×28 digit): the inverse of "scale then rotate".
        ratio = size / DIGIT / s
        cos, sin = torch.cos(a) * ratio, torch.sin(a) * ratio
        theta = torch.zeros(stop - start, 2, 3, dtype=torch.float64)
        theta[:, 0, 0], theta[:, 0, 1] = cos, -sin
        theta[:, 1, 0], theta[:, 1, 1] = sin, cos
        grid = F.affine_grid(theta, [stop - start, 1, size, size], align_corners=False)
        warped = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        snapped = warped.squeeze(1).round(decimals=6)
        out[start:stop] = snapped.round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def _tight_boxes(patches: np.ndarray) -> np.ndarray:
    """(x0, y0, x1, y1) of the non-zero pixels of each patch, x1/y1 exclusive; (N, 4)."""
    cols = patches.any(axis=1)  # (N, W)
    rows = patches.any(axis=2)  # (N, H)
    width, height = cols.shape[1], rows.shape[1]
    x0 = cols.argmax(axis=1)
    x1 = width - cols[:, ::-1].argmax(axis=1)
    y0 = rows.argmax(axis=1)
    y1 = height - rows[:, ::-1].argmax(axis=1)
    empty = ~cols.any(axis=1)
    boxes = np.stack([x0, y0, x1, y1], axis=1)
    boxes[empty] = 0
    return boxes.astype(np.int32)


def _on_canvas(patches: np.ndarray, corner: np.ndarray, canvas: int) -> np.ndarray:
    """The patches with the pixels that fall off a canvas of side `canvas` blanked, each patch
    placed with its top-left corner at `corner` (N, 2) as (x, y), which may be negative."""
    inside = np.arange(patches.shape[1])[None, :]
    cols = (corner[:, :1] + inside >= 0) & (corner[:, :1] + inside < canvas)  # (N, P)
    rows = (corner[:, 1:] + inside >= 0) & (corner[:, 1:] + inside < canvas)
    return patches * (rows[:, :, None] & cols[:, None, :])


def placement_range(spec: SceneSpec, size: int) -> tuple[int, int]:
    """Inclusive range of a size×size patch's top-left coordinate (either axis) under the
    spec's window."""
    low, high = 0, spec.canvas - size  # inclusive range that keeps the patch inside
    if spec.max_offset is not None:
        centre = (spec.canvas - size) / 2
        low = max(low, math.ceil(centre - spec.max_offset))
        high = min(high, math.floor(centre + spec.max_offset))
        if low > high:  # the exact centre falls between two pixels: take either neighbour
            low, high = high, low
    return low, high


def _placements(spec: SceneSpec, size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Top-left corners (N, 2) as (x, y) for a size×size patch under the spec's window."""
    low, high = placement_range(spec, size)
    return rng.integers(low, high + 1, size=(n, 2))


WARP_STREAM = 1  # the warp's stream of a seed S: default_rng([S, WARP_STREAM])


def generate_scenes(
    spec: SceneSpec, digits: np.ndarray, labels: np.ndarray, *, seed: int, centres_of: int | None = None
) -> Scenes:
    """Build one scene per digit, in order, so labels are the digits' labels.

    digits: (N, 28, 28) uint8; labels: (N,). Clutter is cut from other digits of `digits`
    (from the digit itself only when it is the one digit: `ramlab robustness --limit 1`).
    `centres_of` (a robustness scale level): draw the places of a box of this side (the
    dataset's own footprint) under the spec's window, and put each digit's footprint on its
    box's centre (half a pixel up and left where the two sides' parity differs), moved only as
    far as the canvas's edge needs; the same draws as the dataset's own scenes, so the digits
    stay where they were, only resized. None: the footprint itself is placed under the window.
    """
    if digits.ndim != 3 or digits.shape[1:] != (DIGIT, DIGIT) or digits.dtype != np.uint8:
        raise ValueError(f"digits must be (N, 28, 28) uint8, got {digits.shape} {digits.dtype}")
    n = len(digits)
    rng = np.random.default_rng(seed)
    # The warp draws from a stream of its own, so that the placements, clutter and noise of a
    # seed are the same with or without it: a robustness sweep's rotation levels are then the
    # run's test scenes with only the digits turned (`ramlab.robustness`).
    patches = _warp(digits, spec, np.random.default_rng([seed, WARP_STREAM])) if spec.warped else digits
    size, footprint = patches.shape[1], spec.footprint
    margin = (size - footprint) // 2  # the patch's overhang on each side of the footprint

    # The footprint is placed on the canvas; the patch, centred on it, on a canvas padded by
    # the overhang, which is then cropped away with whatever (blank corners) lay on it.
    canvas_size = spec.canvas + 2 * margin
    padded = np.zeros((n, canvas_size, canvas_size), dtype=np.uint8)
    if centres_of is None or centres_of == footprint:
        corner = _placements(spec, footprint, n, rng)  # (N, 2) as (x, y), of the footprint
    else:
        drawn = _placements(spec, centres_of, n, rng)
        corner = np.clip(drawn + (centres_of - footprint) // 2, 0, spec.canvas - footprint)
    rows = np.arange(n)
    _windows(padded, size)[rows, corner[:, 1], corner[:, 0]] = patches
    canvas = np.ascontiguousarray(padded[:, margin : margin + spec.canvas, margin : margin + spec.canvas])
    boxes = _tight_boxes(_on_canvas(patches, corner - margin, spec.canvas) if margin else patches)
    boxes[:, [0, 2]] += corner[:, :1] - margin
    boxes[:, [1, 3]] += corner[:, 1:] - margin
    np.clip(boxes, 0, spec.canvas, out=boxes)  # only a blank digit's empty box can lie off it

    k = spec.clutter_size
    for _ in range(spec.clutter_count):
        other = rng.integers(0, n - 1, size=n) if n > 1 else np.zeros(n, dtype=np.int64)
        other = np.where(other >= rows, other + 1, other) if n > 1 else other  # never itself
        crop = rng.integers(0, DIGIT - k + 1, size=(n, 2))
        pieces = _windows(digits, k)[other, crop[:, 1], crop[:, 0]]  # (N, k, k)
        where = rng.integers(0, spec.canvas - k + 1, size=(n, 2))
        target = _windows(canvas, k)
        target[rows, where[:, 1], where[:, 0]] = np.maximum(target[rows, where[:, 1], where[:, 0]], pieces)

    if spec.noise > 0:
        for start in range(0, n, 4096):  # chunks keep the float temporaries small
            part = canvas[start : start + 4096]
            noise = rng.standard_normal(size=part.shape, dtype=np.float32) * (spec.noise * 255.0)
            part[...] = np.clip(np.rint(part + noise), 0, 255).astype(np.uint8)
    return Scenes(images=canvas, labels=np.asarray(labels, dtype=np.int64), bboxes=boxes, spec=spec)
