"""``procedural``: a library of parametric meshes, the embedded default for quickstart and the demo.

Ten categories built from primitives (boxes, cylinders, surfaces of revolution), each with
several discrete variants (leg styles, backrests, round or square tops …) and continuous
proportions drawn per shape, plus a random colour per part. Shape ``i`` of category ``c``
is a pure function of ``(seed, c, i)``: the same library on every machine, nothing to
download, no licence strings attached (CC0).

Shapes are made z-up (trimesh's primitives are) and marked ``up_axis="z"``, so the shared
normalisation turns them y-up like everything else.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import trimesh

from ...errors import InvalidInputError
from ..records import ShapeRecord, ShapeSource

# Bump when any generator changes, so cached samples and renders of old shapes are not reused.
GENERATOR_VERSION = 1
Part = trimesh.Trimesh


def _color(rng: np.random.Generator) -> np.ndarray:
    """A saturated-enough random colour: pale parts vanish against the white background."""
    hue = rng.uniform(0.0, 1.0)
    rgb = np.clip(np.abs(((hue * 6.0 + np.array([0.0, 4.0, 2.0])) % 6.0) - 3.0) - 1.0, 0.0, 1.0)
    return np.append((0.25 + 0.6 * rgb) * 255, 255).astype(np.uint8)


def _paint(part: Part, color: np.ndarray) -> Part:
    part.visual.face_colors = color
    return part


def _box(extents, centre, color) -> Part:
    return _paint(
        trimesh.creation.box(extents=extents, transform=trimesh.transformations.translation_matrix(centre)), color
    )


def _rod(start, end, radius, color, sections=12) -> Part:
    return _paint(trimesh.creation.cylinder(radius=radius, segment=[start, end], sections=sections), color)


def _lathe(radii, heights, color, base=0.0, sections=24) -> Part:
    """A surface of revolution about z through the profile points (radius, height), capped at both ends."""
    profile = np.column_stack(
        [np.concatenate([[0.0], radii, [0.0]]), np.concatenate([[heights[0]], heights, [heights[-1]]])]
    )
    part = trimesh.creation.revolve(profile, sections=sections)
    part.apply_translation([0.0, 0.0, base])
    return _paint(part, color)


def chair(rng: np.random.Generator) -> list[Part]:
    width, depth, height = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.55)
    seat, frame = _color(rng), _color(rng)
    parts = [_box([width, depth, 0.05], [0, 0, height], seat)]
    inset = rng.uniform(0.02, 0.06)
    for sx in (-1, 1):
        for sy in (-1, 1):
            top = np.array([sx * (width / 2 - inset), sy * (depth / 2 - inset), height])
            splay = rng.uniform(0.0, 0.05) * np.array([sx, sy, 0.0])
            parts.append(_rod(top, [top[0] + splay[0], top[1] + splay[1], 0.0], 0.02, frame))
    back_height = rng.uniform(0.35, 0.7)
    if rng.random() < 0.5:
        parts.append(_box([width, 0.04, back_height], [0, depth / 2 - 0.02, height + back_height / 2], seat))
    else:
        slats = int(rng.integers(2, 6))
        for x in np.linspace(-width / 2 + 0.03, width / 2 - 0.03, slats):
            parts.append(_box([0.03, 0.03, back_height], [x, depth / 2 - 0.02, height + back_height / 2], frame))
        parts.append(_box([width, 0.04, 0.06], [0, depth / 2 - 0.02, height + back_height], frame))
    if rng.random() < 0.4:
        for sx in (-1, 1):
            parts.append(_box([0.04, depth, 0.04], [sx * width / 2, 0, height + 0.22], frame))
    return parts


def table(rng: np.random.Generator) -> list[Part]:
    height = rng.uniform(0.45, 0.8)
    top, legs = _color(rng), _color(rng)
    if rng.random() < 0.5:
        width, depth = rng.uniform(0.8, 1.6), rng.uniform(0.5, 0.9)
        parts = [_box([width, depth, 0.05], [0, 0, height], top)]
        for sx in (-1, 1):
            for sy in (-1, 1):
                corner = [sx * (width / 2 - 0.06), sy * (depth / 2 - 0.06)]
                parts.append(_box([0.05, 0.05, height], [*corner, height / 2], legs))
        return parts
    radius = rng.uniform(0.35, 0.6)
    parts = [_rod([0, 0, height - 0.025], [0, 0, height + 0.025], radius, top, sections=32)]
    parts.append(_rod([0, 0, 0.03], [0, 0, height], rng.uniform(0.03, 0.07), legs))
    parts.append(_rod([0, 0, 0], [0, 0, 0.03], radius * rng.uniform(0.4, 0.7), legs, sections=24))
    return parts


def lamp(rng: np.random.Generator) -> list[Part]:
    metal, shade = _color(rng), _color(rng)
    base_radius, height = rng.uniform(0.08, 0.16), rng.uniform(0.3, 0.7)
    parts = [_rod([0, 0, 0], [0, 0, 0.03], base_radius, metal, sections=24)]
    if rng.random() < 0.5:
        parts.append(_rod([0, 0, 0.03], [0, 0, height], 0.012, metal))
        top = np.array([0.0, 0.0, height])
    else:
        elbow = np.array([0.0, 0.0, height * rng.uniform(0.5, 0.7)])
        top = elbow + np.array([rng.uniform(0.1, 0.25), 0.0, height * rng.uniform(0.3, 0.5)])
        parts += [_rod([0, 0, 0.03], elbow, 0.012, metal), _rod(elbow, top, 0.012, metal)]
    low, high = rng.uniform(0.08, 0.16), rng.uniform(0.03, 0.08)
    drop = rng.uniform(0.08, 0.16)
    shade_part = _lathe([low, high], [0.0, drop], shade)
    shade_part.apply_translation(top - np.array([0.0, 0.0, drop * 0.6]))
    return [*parts, shade_part]


def mug(rng: np.random.Generator) -> list[Part]:
    radius, height = rng.uniform(0.035, 0.06), rng.uniform(0.07, 0.12)
    body_color = _color(rng)
    taper = rng.uniform(0.85, 1.15)
    body = _lathe([radius * taper, radius], [0.0, height], body_color)
    handle = trimesh.creation.torus(major_radius=height * 0.3, minor_radius=rng.uniform(0.006, 0.012))
    handle.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
    handle.apply_translation([radius + height * 0.12, 0, height / 2])
    return [body, _paint(handle, body_color)]


def bottle(rng: np.random.Generator) -> list[Part]:
    radius, body_height = rng.uniform(0.03, 0.06), rng.uniform(0.12, 0.22)
    neck, neck_height = radius * rng.uniform(0.25, 0.45), rng.uniform(0.03, 0.08)
    shoulder = rng.uniform(0.02, 0.06)
    heights = [0.0, body_height, body_height + shoulder, body_height + shoulder + neck_height]
    glass, cap = _color(rng), _color(rng)
    body = _lathe([radius, radius, neck, neck], heights, glass)
    top = heights[-1]
    return [body, _rod([0, 0, top], [0, 0, top + rng.uniform(0.01, 0.03)], neck * 1.15, cap)]


def airplane(rng: np.random.Generator) -> list[Part]:
    length, radius = rng.uniform(1.0, 1.6), rng.uniform(0.05, 0.09)
    body, wing_color = _color(rng), _color(rng)
    fuselage = _paint(trimesh.creation.capsule(height=length, radius=radius), body)
    fuselage.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0]))
    span, chord = rng.uniform(0.9, 1.6), rng.uniform(0.15, 0.3)
    wing_x = rng.uniform(-0.1, 0.15) * length
    wing = _box([chord, span, 0.02], [wing_x, 0, 0], wing_color)
    sweep = rng.uniform(-0.3, 0.5)
    # Sweep: move each wing vertex back in proportion to its distance from the fuselage.
    wing.vertices[:, 0] -= sweep * np.abs(wing.vertices[:, 1])
    tail = -length / 2
    parts = [fuselage, wing, _box([0.12, 0.02, 0.2], [tail, 0, 0.1 + radius / 2], wing_color)]
    parts.append(_box([0.1, span * rng.uniform(0.25, 0.4), 0.015], [tail, 0, radius / 2], wing_color))
    engines = int(rng.choice([0, 2, 4]))
    for index in range(engines):
        y = (index // 2 + 1) * span / (engines + 2) * (1 if index % 2 else -1)
        x = wing_x - sweep * abs(y)
        parts.append(_rod([x + 0.08, y, -0.05], [x - 0.1, y, -0.05], 0.035, body))
    return parts


def car(rng: np.random.Generator) -> list[Part]:
    length, width, height = rng.uniform(0.8, 1.3), rng.uniform(0.4, 0.55), rng.uniform(0.15, 0.25)
    paint, dark = _color(rng), np.array([30, 30, 30, 255], dtype=np.uint8)
    wheel = rng.uniform(0.08, 0.12)
    parts = [_box([length, width, height], [0, 0, wheel + height / 2], paint)]
    cabin_length = length * rng.uniform(0.35, 0.6)
    cabin_shift = rng.uniform(-0.15, 0.1) * length
    cabin_height = rng.uniform(0.1, 0.2)
    parts.append(
        _box([cabin_length, width * 0.9, cabin_height], [cabin_shift, 0, wheel + height + cabin_height / 2], paint)
    )
    for sx in (-1, 1):
        for sy in (-1, 1):
            centre = np.array([sx * length * 0.32, sy * width / 2, wheel])
            axle = np.array([0.0, 0.04, 0.0])
            parts.append(_rod(centre - axle, centre + axle, wheel, dark, sections=20))
    return parts


def sofa(rng: np.random.Generator) -> list[Part]:
    width, depth = rng.uniform(1.2, 2.2), rng.uniform(0.7, 0.95)
    seat_height, back_height = rng.uniform(0.35, 0.45), rng.uniform(0.3, 0.5)
    fabric, cushion = _color(rng), _color(rng)
    parts = [_box([width, depth, seat_height - 0.1], [0, 0, (seat_height - 0.1) / 2 + 0.05], fabric)]
    parts.append(
        _box([width, 0.18, back_height + seat_height], [0, depth / 2 - 0.09, (back_height + seat_height) / 2], fabric)
    )
    arm = rng.uniform(0.1, 0.22)
    arm_height = seat_height + rng.uniform(0.05, 0.2)
    for sx in (-1, 1):
        parts.append(_box([arm, depth, arm_height], [sx * (width / 2 + arm / 2), 0, arm_height / 2], fabric))
    seats = int(rng.integers(1, 4))
    for index in range(seats):
        x = -width / 2 + width * (index + 0.5) / seats
        parts.append(_box([width / seats - 0.02, depth - 0.2, 0.1], [x, -0.08, seat_height], cushion))
    return parts


def shelf(rng: np.random.Generator) -> list[Part]:
    width, depth, height = rng.uniform(0.5, 1.2), rng.uniform(0.25, 0.4), rng.uniform(0.8, 2.0)
    wood = _color(rng)
    boards = int(rng.integers(3, 7))
    parts = [_box([0.03, depth, height], [sx * width / 2, 0, height / 2], wood) for sx in (-1, 1)]
    for z in np.linspace(0.03, height - 0.02, boards):
        parts.append(_box([width, depth, 0.025], [0, 0, z], wood))
    if rng.random() < 0.6:
        parts.append(_box([width, 0.01, height], [0, depth / 2, height / 2], _color(rng)))
    return parts


def vase(rng: np.random.Generator) -> list[Part]:
    height = rng.uniform(0.2, 0.45)
    heights = np.linspace(0.0, height, 9)
    base = rng.uniform(0.04, 0.08)
    bulge, frequency, phase = rng.uniform(0.02, 0.06), rng.uniform(0.5, 1.5), rng.uniform(0, np.pi)
    radii = base + bulge * np.sin(np.pi * frequency * heights / height + phase) ** 2
    radii[-1] = radii[-2] * rng.uniform(0.9, 1.3)
    return [_lathe(radii, heights, _color(rng))]


CATEGORIES: dict[str, Callable[[np.random.Generator], list[Part]]] = {
    "airplane": airplane,
    "bottle": bottle,
    "car": car,
    "chair": chair,
    "lamp": lamp,
    "mug": mug,
    "shelf": shelf,
    "sofa": sofa,
    "table": table,
    "vase": vase,
}


def make_shape(category: str, index: int, seed: int = 0) -> trimesh.Trimesh:
    """Shape ``index`` of ``category``: deterministic for ``(seed, category, index)``."""
    if category not in CATEGORIES:
        raise InvalidInputError(f"category: expected one of {sorted(CATEGORIES)}, got {category!r}")
    rng = np.random.default_rng([seed, sorted(CATEGORIES).index(category), index])
    return trimesh.util.concatenate(CATEGORIES[category](rng))


def collect(root: object = None, per_category: int = 20, test_fraction: float = 0.2, seed: int = 0) -> ShapeSource:
    """``per_category`` shapes of each category; the last ``test_fraction`` of each go to ``test``."""
    if root is not None:
        raise InvalidInputError("procedural: takes no ROOT folder (it generates its shapes)")
    if per_category < 1:
        raise InvalidInputError(f"per_category: expected a positive number, got {per_category}")
    test_count = round(per_category * test_fraction)
    records = []
    for category in sorted(CATEGORIES):
        for index in range(per_category):
            records.append(
                ShapeRecord(
                    shape_id=f"{category}_{index:04d}",
                    split="test" if index >= per_category - test_count else "train",
                    label=category,
                    make_mesh=lambda category=category, index=index: make_shape(category, index, seed),
                    cache_key=f"procedural-v{GENERATOR_VERSION}-{seed}-{category}-{index}",
                    up_axis="z",
                    display_path=f"procedural://{category}/{index}",
                )
            )
    return ShapeSource(
        name="procedural",
        records=records,
        class_names=sorted(CATEGORIES),
        licence="cc0-1.0",
        description=f"Procedural hf-cmah shapes: {len(CATEGORIES)} categories × {per_category}, seed {seed}.",
    )


__all__ = ["CATEGORIES", "collect", "make_shape"]
