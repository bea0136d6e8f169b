"""Dataset builders: each scans one layout and returns a :class:`~hf_cmah.data.records.ShapeSource`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from ...errors import ConfigError
from ..records import ShapeSource
from . import meshfolder, modelnet40, pix3d, procedural, psb, shapenet55, shapenetrender

BUILDERS: dict[str, Callable[..., ShapeSource]] = {
    "meshfolder": meshfolder.collect,
    "modelnet40": modelnet40.collect,
    "pix3d": pix3d.collect,
    "procedural": procedural.collect,
    "psb": psb.collect,
    "shapenet55": shapenet55.collect,
    "shapenetrender": shapenetrender.collect,
}


def collect_source(name: str, root: str | Path | None, **options: object) -> ShapeSource:
    """Run builder ``name`` on ``root``; options that are None are left at the builder's default.

    An option the builder does not take is a :class:`ConfigError` (``--meshes`` means nothing to psb).
    """
    if name not in BUILDERS:
        raise ConfigError(f"builder: expected one of {', '.join(BUILDERS)}, got {name!r}")
    collect = BUILDERS[name]
    accepted = inspect.signature(collect).parameters
    given = {key: value for key, value in options.items() if value is not None}
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise ConfigError(f"builder {name}: does not take option(s) {', '.join(unknown)}")
    if name != "procedural" and root is None:
        raise ConfigError(f"builder {name}: needs a ROOT folder")
    return collect(root, **given)


__all__ = ["BUILDERS", "collect_source"]
