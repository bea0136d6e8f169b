"""Run the Blender renderer: write a JSON job per batch, start one Blender process, read the results.

Blender starts in about a second, so one process renders a whole batch of meshes; a batch
that crashes loses only the meshes it had not finished, and those are reported by id.
Workbench draws on a single core, so its batches run in one process per core at once.
The renderer itself (``render_views.py``) runs in Blender's own Python and imports nothing
from ``hf_cmah``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ConfigError

RENDER_SCRIPT = Path(__file__).with_name("render_views.py")
# mixed: each view draws Cycles (with probability ``cycles_fraction``) or Workbench.
ENGINES = ("cycles", "workbench", "mixed")
# Lighting presets (the rigs are in render_views.py): studio, a key and a fill light (what datasets are
# rendered with); side, one low warm light from the left, hard shadows; sun_sky, a high sun under a blue
# sky; soft_box, two large soft lights beside the camera (product shots); low_key, one dim light from
# behind on a dark world. ``lighting="random"`` draws one per view.
LIGHTINGS = ("studio", "side", "sun_sky", "soft_box", "low_key")
MATERIALS = ("auto", "vertex")
# Asset formats whose own materials the renderer imports with Blender's importers (render_views.import_source).
IMPORTED_FORMATS = {".obj": "obj", ".gltf": "gltf", ".glb": "gltf"}
# A fixed job-file name inside each batch's temporary folder keeps the Blender command line short.
JOB_NAME = "job.json"
# Concurrent Workbench processes at most, on machines with many cores: each holds its own Blender in memory.
MAX_RENDER_JOBS = 8


@dataclass(frozen=True)
class RenderSettings:
    """How views are rendered; every field changes the images, so all of them key the render cache.

    The domain-randomisation fields (``lighting="random"``, the ``*_jitter*`` fields, ``engine="mixed"``)
    are drawn per view by `views_for`, seeded, and recorded in each view's ``cameras.json`` entry.
    ``materials="auto"`` shows an asset's own materials where its file has them (`render_source`);
    ``"vertex"`` always renders the plain mesh with its vertex colours.
    """

    engine: str = "cycles"
    samples: int = 16
    resolution: int = 224
    num_views: int = 4
    elevations: tuple[float, ...] = (30.0,)
    azimuth_offset: float = 0.0
    jitter_deg: float = 0.0
    fov_deg: float = 40.0
    margin: float = 1.05
    seed: int = 0
    device: str = "auto"
    denoise: bool = False
    lighting: str = "studio"
    light_rotation_jitter_deg: float = 0.0
    fov_jitter_deg: float = 0.0
    distance_jitter: float = 0.0
    roll_jitter_deg: float = 0.0
    cycles_fraction: float = 0.5
    materials: str = "auto"

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ConfigError(f"engine: expected one of {ENGINES}, got {self.engine!r}")
        if self.lighting not in (*LIGHTINGS, "random"):
            raise ConfigError(f"lighting: expected one of {(*LIGHTINGS, 'random')}, got {self.lighting!r}")
        if self.materials not in MATERIALS:
            raise ConfigError(f"materials: expected one of {MATERIALS}, got {self.materials!r}")
        if self.resolution < 8 or self.samples < 1 or self.num_views < 0:
            raise ConfigError("resolution must be ≥ 8, samples ≥ 1 and num_views ≥ 0")
        low, high = self.fov_deg - self.fov_jitter_deg, self.fov_deg + self.fov_jitter_deg
        if not 1.0 < low <= high < 170.0:
            raise ConfigError(f"fov_deg ± fov_jitter_deg: expected angles between 1 and 170 degrees, got {low}..{high}")
        if not 0.0 <= self.distance_jitter <= 2.0:
            raise ConfigError(f"distance_jitter: expected a fraction between 0 and 2, got {self.distance_jitter}")
        if not 0.0 <= self.cycles_fraction <= 1.0:
            raise ConfigError(f"cycles_fraction: expected a probability between 0 and 1, got {self.cycles_fraction}")

    def views_for(self, shape_key: str) -> list[dict[str, float | str]]:
        """Azimuths evenly spaced around the shape, cycling through the elevations, each view randomised.

        Draws come from a generator seeded by ``seed`` and the shape's key, so every shape gets its
        own views and a rebuild gets the same ones; a field at its default draws nothing, so views
        made before that field existed stay the same.
        """
        rng = random.Random(f"{self.seed}:{shape_key}")
        views = []
        for index in range(self.num_views):
            azimuth = self.azimuth_offset + 360.0 * index / max(self.num_views, 1)
            elevation = self.elevations[index % len(self.elevations)]
            if self.jitter_deg:
                azimuth += rng.uniform(-self.jitter_deg, self.jitter_deg)
                elevation += rng.uniform(-self.jitter_deg, self.jitter_deg)
            view: dict[str, float | str] = {"azimuth": round(azimuth % 360.0, 4), "elevation": round(elevation, 4)}
            views.append({**view, **self._randomised_scene(rng)})
        return views

    def _randomised_scene(self, rng: random.Random) -> dict[str, float | str]:
        """One view's draws of the randomised fields, in a fixed order (the order is part of the seed)."""
        view: dict[str, float | str] = {}
        if self.lighting == "random":
            view["lighting"] = rng.choice(LIGHTINGS)
        if self.light_rotation_jitter_deg:
            view["light_rotation"] = round(rng.uniform(-1.0, 1.0) * self.light_rotation_jitter_deg, 4)
        if self.fov_jitter_deg:
            view["fov_deg"] = round(self.fov_deg + rng.uniform(-1.0, 1.0) * self.fov_jitter_deg, 4)
        if self.distance_jitter:
            view["distance_scale"] = round(1.0 + rng.uniform(0.0, self.distance_jitter), 4)
        if self.roll_jitter_deg:
            view["roll"] = round(rng.uniform(-1.0, 1.0) * self.roll_jitter_deg, 4)
        if self.engine == "mixed":
            view["engine"] = "cycles" if rng.random() < self.cycles_fraction else "workbench"
        return view

    def fingerprint(self) -> dict:
        """The fields that key the render cache. Fields added after the cache existed count only when not
        at their default, so renders cached before them keep their keys; ``materials`` never counts here:
        whether a shape is shown with its own materials keys that shape's entry (see `render_source`)."""
        fields = asdict(self)
        del fields["materials"]
        for name, default in LATER_FIELD_DEFAULTS.items():
            if fields[name] == default:
                del fields[name]
        return fields


# Fields RenderSettings gained after renders were first cached, with their defaults.
LATER_FIELD_DEFAULTS = {
    "lighting": "studio",
    "light_rotation_jitter_deg": 0.0,
    "fov_jitter_deg": 0.0,
    "distance_jitter": 0.0,
    "roll_jitter_deg": 0.0,
    "cycles_fraction": 0.5,
}


def shows_own_materials(path: str | Path | None, settings: RenderSettings) -> bool:
    """Whether the renderer imports ``path`` itself (with its materials) rather than the plain mesh.

    OBJ counts when it names a material library that exists beside it (otherwise Blender would show
    the same grey as the plain mesh); glTF / GLB always (PBR materials, often embedded textures).
    """
    if path is None or settings.materials != "auto":
        return False
    kind = IMPORTED_FORMATS.get(Path(path).suffix.lower())
    return kind is not None and (kind != "obj" or bool(_material_libraries(Path(path))))


def render_source(path: str | Path | None, to_normalized, settings: RenderSettings) -> dict | None:
    """The renderer's ``source`` for an asset file it shows with its own materials, else None.

    ``to_normalized`` is the 4×4 that took the file to the normalised y-up frame of the mesh the
    views are framed on (``metadata["to_normalized"]`` of `hf_cmah.geometry.normalize_mesh`).
    """
    if not shows_own_materials(path, settings):
        return None
    matrix = [[float(value) for value in row] for row in to_normalized]
    return {
        "path": str(Path(path).resolve()),
        "format": IMPORTED_FORMATS[Path(path).suffix.lower()],
        "to_normalized": matrix,
    }


def _material_libraries(obj_path: Path) -> list[Path]:
    """The ``mtllib`` files an OBJ names that exist beside it."""
    with open(obj_path, encoding="utf-8", errors="replace") as handle:
        names = [line[len("mtllib ") :].strip() for line in handle if line.startswith("mtllib ")]
    return [obj_path.parent / name for name in names if (obj_path.parent / name).is_file()]


@dataclass
class RenderItem:
    """One mesh to render: an ``.npz`` (y-up ``vertices``, ``faces``, optional ``colors``) and its views;
    ``source`` (from `render_source`) shows the asset file itself, with its materials, instead."""

    id: str
    mesh: Path
    out_dir: Path
    views: list[dict[str, float | str]] = field(default_factory=list)
    source: dict | None = None


def find_blender(explicit: str | None = None) -> list[str]:
    """The command that runs a Python script in Blender, as a list to which the script path is appended.

    Looked for in this order: ``explicit``, ``$HF_CMAH_BLENDER``, a ``.venv-blender/bin/python``
    (bpy as a module) beside this interpreter's virtual environment or in the working directory (in a
    checkout, both are its root), ``blender`` on ``PATH``, then this interpreter when it has ``bpy`` itself.
    """
    candidates = [explicit, os.environ.get("HF_CMAH_BLENDER")]
    candidates += [str(Path(root) / ".venv-blender" / "bin" / "python") for root in _project_roots()]
    candidates.append(shutil.which("blender"))
    if importlib.util.find_spec("bpy") is not None:  # bpy installed beside hf_cmah (a Space, one environment)
        candidates.append(sys.executable)
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            if Path(candidate).name.startswith("blender"):
                return [candidate, "--background", "--factory-startup", "--python-exit-code", "1", "--python"]
            return [candidate]
    raise ConfigError(
        "no Blender found: run `make blender-env` (creates .venv-blender with bpy), "
        "install Blender, or set HF_CMAH_BLENDER to a Blender executable or a Python with bpy"
    )


def _project_roots() -> list[Path]:
    """Where `make blender-env` puts ``.venv-blender``: beside ``.venv`` (the active environment), or here."""
    return [Path(sys.prefix).parent, Path.cwd()]


def default_render_jobs(settings: RenderSettings) -> int:
    """Blender processes to run at once: Workbench draws on one core, so one per core (up to
    `MAX_RENDER_JOBS`); Cycles already uses every core (or the GPU), so one."""
    return min(os.cpu_count() or 1, MAX_RENDER_JOBS) if settings.engine == "workbench" else 1


def render_batches(
    items: Sequence[RenderItem],
    settings: RenderSettings,
    blender: str | None = None,
    batch_size: int = 64,
    threads: int = 0,
    on_done: Callable[[str, str | None], None] | None = None,
    jobs: int | None = None,
) -> dict[str, str | None]:
    """Render ``items`` in batches of up to ``batch_size`` meshes per Blender process, ``jobs`` at once.

    ``jobs`` defaults to `default_render_jobs`; batches shrink so that every job gets one.
    Returns ``{item id: None on success, else the error message}``; ``on_done(id, error)``
    is called as each mesh finishes (from the job's thread), which is what drives progress bars.
    The first error raised (``--strict``, Ctrl-C) stops every running Blender and is re-raised.
    """
    command = find_blender(blender)
    jobs = max(1, jobs if jobs is not None else default_render_jobs(settings))
    size = max(1, min(batch_size, math.ceil(len(items) / jobs)))
    batches = [list(items[start : start + size]) for start in range(0, len(items), size)]
    running: list[subprocess.Popen] = []
    outcome: dict[str, str | None] = {}
    with ThreadPoolExecutor(max_workers=min(jobs, max(1, len(batches)))) as pool:
        futures = [pool.submit(_render_batch, command, batch, settings, threads, on_done, running) for batch in batches]
        try:
            for future in futures:
                outcome.update(future.result())
        except BaseException:
            for future in futures:
                future.cancel()
            for process in list(running):
                process.kill()
            raise
    return outcome


def _render_batch(
    command: list[str],
    batch: list[RenderItem],
    settings: RenderSettings,
    threads: int,
    on_done: Callable[[str, str | None], None] | None,
    running: list[subprocess.Popen],
) -> dict[str, str | None]:
    with tempfile.TemporaryDirectory(prefix="hf-cmah-render-") as workdir:
        workdir = Path(workdir)
        results = workdir / "results.jsonl"
        results.touch()
        job = {
            "settings": {**asdict(settings), "threads": threads},
            "meshes": [{**asdict(item), "mesh": str(item.mesh), "out_dir": str(item.out_dir)} for item in batch],
            "results": str(results),
        }
        (workdir / JOB_NAME).write_text(json.dumps(job))
        log_path = workdir / "blender.log"
        with open(log_path, "wb") as log:
            args = [*command, str(RENDER_SCRIPT)]
            args += ["--", str(workdir / JOB_NAME)] if len(command) > 1 else [str(workdir / JOB_NAME)]
            process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
            running.append(process)
            try:
                outcome = _follow_results(process, results, on_done)
            except BaseException:  # --strict or Ctrl-C: never leave Blender running on its own
                process.kill()
                process.wait()
                raise
            finally:
                running.remove(process)
        missing = [item.id for item in batch if item.id not in outcome]
        if missing:
            tail = log_path.read_text(errors="replace")[-800:].strip()
            reason = f"Blender exited with code {process.returncode} before rendering this mesh; log tail: {tail}"
            for item_id in missing:
                outcome[item_id] = reason
                if on_done:
                    on_done(item_id, reason)
        return outcome


def _follow_results(
    process: subprocess.Popen, results: Path, on_done: Callable[[str, str | None], None] | None
) -> dict[str, str | None]:
    """Read the renderer's result lines while it runs, so progress shows mesh by mesh."""
    outcome: dict[str, str | None] = {}
    with open(results, encoding="utf-8") as handle:
        buffer = ""
        while True:
            finished = process.poll() is not None
            buffer += handle.read()
            *lines, buffer = buffer.split("\n")
            for line in lines:
                record = json.loads(line)
                outcome[record["id"]] = None if record["ok"] else record["error"]
                if on_done:
                    on_done(record["id"], outcome[record["id"]])
            if finished:
                return outcome
            time.sleep(0.2)


__all__ = [
    "ENGINES",
    "LIGHTINGS",
    "MATERIALS",
    "RENDER_SCRIPT",
    "RenderItem",
    "RenderSettings",
    "default_render_jobs",
    "find_blender",
    "render_batches",
    "render_source",
    "shows_own_materials",
]
