"""Run the Blender renderer: write a JSON job per batch, start one Blender process, read the results.

Blender starts in about a second, so one process renders a whole batch of meshes; a batch
that crashes loses only the meshes it had not finished, and those are reported by id.
The renderer itself (``render_views.py``) runs in Blender's own Python and imports nothing
from ``hf_cmah``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ConfigError

RENDER_SCRIPT = Path(__file__).with_name("render_views.py")
ENGINES = ("cycles", "workbench")
# studio: a key and a fill light (what datasets are rendered with); side: one low warm light from the
# left and little ambient light, hard shadows — another lighting for checking a model against.
LIGHTINGS = ("studio", "side")
# A fixed job-file name inside each batch's temporary folder keeps the Blender command line short.
JOB_NAME = "job.json"


@dataclass(frozen=True)
class RenderSettings:
    """How views are rendered; every field changes the images, so all of them key the render cache."""

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

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ConfigError(f"engine: expected one of {ENGINES}, got {self.engine!r}")
        if self.lighting not in LIGHTINGS:
            raise ConfigError(f"lighting: expected one of {LIGHTINGS}, got {self.lighting!r}")
        if self.resolution < 8 or self.samples < 1 or self.num_views < 0:
            raise ConfigError("resolution must be ≥ 8, samples ≥ 1 and num_views ≥ 0")
        if not 1.0 < self.fov_deg < 170.0:
            raise ConfigError(f"fov_deg: expected an angle between 1 and 170 degrees, got {self.fov_deg}")

    def views_for(self, shape_key: str) -> list[dict[str, float]]:
        """Azimuths evenly spaced around the shape, cycling through the elevations.

        Jitter is drawn from a generator seeded by ``seed`` and the shape's key, so every
        shape gets its own views and a rebuild gets the same ones.
        """
        rng = random.Random(f"{self.seed}:{shape_key}")
        views = []
        for index in range(self.num_views):
            azimuth = self.azimuth_offset + 360.0 * index / max(self.num_views, 1)
            elevation = self.elevations[index % len(self.elevations)]
            if self.jitter_deg:
                azimuth += rng.uniform(-self.jitter_deg, self.jitter_deg)
                elevation += rng.uniform(-self.jitter_deg, self.jitter_deg)
            views.append({"azimuth": round(azimuth % 360.0, 4), "elevation": round(elevation, 4)})
        return views

    def fingerprint(self) -> dict:
        """The fields that key the render cache; ``lighting`` only when not the default, so the renders
        cached before that field existed (all studio-lit) keep their keys."""
        fields = asdict(self)
        if fields["lighting"] == "studio":
            del fields["lighting"]
        return fields


@dataclass
class RenderItem:
    """One mesh to render: an ``.npz`` (y-up ``vertices``, ``faces``, optional ``colors``) and its views."""

    id: str
    mesh: Path
    out_dir: Path
    views: list[dict[str, float]] = field(default_factory=list)


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


def render_batches(
    items: Sequence[RenderItem],
    settings: RenderSettings,
    blender: str | None = None,
    batch_size: int = 64,
    threads: int = 0,
    on_done: Callable[[str, str | None], None] | None = None,
) -> dict[str, str | None]:
    """Render ``items`` in batches of ``batch_size`` meshes per Blender process.

    Returns ``{item id: None on success, else the error message}``; ``on_done(id, error)``
    is called as each mesh finishes, which is what drives progress bars.
    """
    command = find_blender(blender)
    outcome: dict[str, str | None] = {}
    for start in range(0, len(items), batch_size):
        batch = list(items[start : start + batch_size])
        outcome.update(_render_batch(command, batch, settings, threads, on_done))
    return outcome


def _render_batch(
    command: list[str],
    batch: list[RenderItem],
    settings: RenderSettings,
    threads: int,
    on_done: Callable[[str, str | None], None] | None,
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
            try:
                outcome = _follow_results(process, results, on_done)
            except BaseException:  # --strict or Ctrl-C: never leave Blender running on its own
                process.kill()
                process.wait()
                raise
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


__all__ = ["ENGINES", "LIGHTINGS", "RENDER_SCRIPT", "RenderItem", "RenderSettings", "find_blender", "render_batches"]
