"""The render launcher without Blender: settings, deterministic views, finding Blender, parallel jobs."""

from __future__ import annotations

import os
import sys
import time

import pytest

from hf_cmah.errors import ConfigError
from hf_cmah.render import launcher
from hf_cmah.render.launcher import RenderSettings, find_blender


def test_views_are_evenly_spaced_and_cycle_elevations():
    views = RenderSettings(num_views=4, elevations=(10.0, 40.0)).views_for("shape")
    assert [view["azimuth"] for view in views] == [0.0, 90.0, 180.0, 270.0]
    assert [view["elevation"] for view in views] == [10.0, 40.0, 10.0, 40.0]


def test_jitter_is_seeded_per_shape():
    settings = RenderSettings(num_views=3, jitter_deg=5.0, seed=1)
    assert settings.views_for("a") == settings.views_for("a")
    assert settings.views_for("a") != settings.views_for("b")
    assert settings.views_for("a") != RenderSettings(num_views=3, jitter_deg=5.0, seed=2).views_for("a")
    for view, even in zip(settings.views_for("a"), (0.0, 120.0, 240.0)):
        assert abs((view["azimuth"] - even + 180) % 360 - 180) <= 5.0


@pytest.mark.parametrize("bad", [{"engine": "eevee"}, {"resolution": 2}, {"fov_deg": 0.5}, {"num_views": -1}])
def test_invalid_settings(bad):
    with pytest.raises(ConfigError):
        RenderSettings(**bad)


def test_find_blender_explains_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_CMAH_BLENDER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(launcher, "_project_roots", lambda: [tmp_path])
    with pytest.raises(ConfigError, match="make blender-env"):
        find_blender()
    fake = tmp_path / "blender"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert find_blender()[:2] == [str(fake), "--background"]
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    assert find_blender(str(python)) == [str(python)]


def test_lighting_is_checked_and_keys_the_cache_only_when_not_the_default():
    with pytest.raises(ConfigError, match="lighting"):
        RenderSettings(lighting="candle")
    studio = RenderSettings()
    assert "lighting" not in studio.fingerprint(), "renders cached before lighting existed keep their keys"
    assert RenderSettings(lighting="side").fingerprint() == {**studio.fingerprint(), "lighting": "side"}


def test_randomised_fields_are_drawn_per_view_seeded_and_off_by_default():
    plain = RenderSettings(num_views=3, jitter_deg=5.0)
    assert all(set(view) == {"azimuth", "elevation"} for view in plain.views_for("a")), "defaults draw nothing new"
    settings = RenderSettings(
        num_views=8,
        jitter_deg=5.0,
        lighting="random",
        light_rotation_jitter_deg=90.0,
        fov_jitter_deg=10.0,
        distance_jitter=0.5,
        roll_jitter_deg=15.0,
        engine="mixed",
    )
    views = settings.views_for("a")
    assert views == settings.views_for("a") and views != settings.views_for("b")
    assert {view["lighting"] for view in views} <= set(launcher.LIGHTINGS) and len({v["lighting"] for v in views}) > 1
    assert {view["engine"] for view in views} == {"cycles", "workbench"}
    for view in views:
        assert 30.0 <= view["fov_deg"] <= 50.0 and 1.0 <= view["distance_scale"] <= 1.5
        assert abs(view["roll"]) <= 15.0 and abs(view["light_rotation"]) <= 90.0
    assert RenderSettings(num_views=8, engine="mixed", cycles_fraction=1.0).views_for("a")[0]["engine"] == "cycles"


@pytest.mark.parametrize(
    "bad",
    [
        {"lighting": "candle"},
        {"materials": "pbr"},
        {"fov_deg": 40.0, "fov_jitter_deg": 45.0},
        {"distance_jitter": -0.1},
        {"cycles_fraction": 1.5},
        {"engine": "eevee"},
    ],
)
def test_randomised_settings_are_checked(bad):
    with pytest.raises(ConfigError, match=next(iter(bad)).split("_")[0]):
        RenderSettings(**bad)


def test_new_fields_key_the_cache_only_when_set():
    base = RenderSettings().fingerprint()
    assert "materials" not in base and RenderSettings(materials="vertex").fingerprint() == base
    assert RenderSettings(roll_jitter_deg=10.0).fingerprint() == {**base, "roll_jitter_deg": 10.0}
    assert RenderSettings(engine="mixed").fingerprint() == {**base, "engine": "mixed"}


def test_render_source_only_for_assets_with_their_own_materials(tmp_path):
    identity = [[1.0 if i == j else 0.0 for j in range(4)] for i in range(4)]
    settings = RenderSettings()
    bare = tmp_path / "bare.obj"
    bare.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    named_missing = tmp_path / "missing.obj"
    named_missing.write_text("mtllib absent.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with_library = tmp_path / "chair.obj"
    with_library.write_text("mtllib chair.mtl\nusemtl red\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    (tmp_path / "chair.mtl").write_text("newmtl red\nKd 1 0 0\n")
    assert launcher.render_source(bare, identity, settings) is None
    assert launcher.render_source(named_missing, identity, settings) is None
    assert launcher.render_source(tmp_path / "shape.off", identity, settings) is None
    source = launcher.render_source(with_library, identity, settings)
    assert source == {"path": str(with_library.resolve()), "format": "obj", "to_normalized": identity}
    assert launcher.render_source(tmp_path / "car.glb", identity, settings)["format"] == "gltf"
    assert launcher.render_source(with_library, identity, RenderSettings(materials="vertex")) is None


FAKE_RENDERER = """#!{python}
# Stands in for Blender: reports each mesh of its job; waits for a second process to have started.
import json, os, sys, time
from pathlib import Path
job = json.loads(Path(sys.argv[-1]).read_text())
marks = Path({marks!r})
(marks / f"started-{{os.getpid()}}").touch()
deadline = time.time() + 20
while len(list(marks.glob("started-*"))) < {wait_for} and time.time() < deadline:
    time.sleep(0.05)
with open(job["results"], "a") as results:
    for mesh in job["meshes"]:
        if mesh["id"].startswith("slow"):
            time.sleep(60)
        error = "bad mesh" if mesh["id"].startswith("bad") else None
        record = {{"id": mesh["id"], "ok": error is None, "error": error, "pid": os.getpid()}}
        results.write(json.dumps(record) + "\\n")
        results.flush()
"""


def _fake_renderer(tmp_path, wait_for: int) -> str:
    marks = tmp_path / "marks"
    marks.mkdir()
    script = tmp_path / "fake-renderer"
    script.write_text(FAKE_RENDERER.format(python=sys.executable, marks=str(marks), wait_for=wait_for))
    script.chmod(0o755)
    return str(script)


def _items(tmp_path, ids):
    return [launcher.RenderItem(item_id, tmp_path / f"{item_id}.npz", tmp_path / item_id) for item_id in ids]


def test_workbench_renders_in_one_process_per_core_and_cycles_in_one():
    assert launcher.default_render_jobs(RenderSettings(engine="workbench")) == min(os.cpu_count(), 8)
    assert launcher.default_render_jobs(RenderSettings(engine="cycles")) == 1
    assert launcher.default_render_jobs(RenderSettings(engine="mixed")) == 1


def test_jobs_render_batches_at_once_and_report_every_mesh(tmp_path):
    blender = _fake_renderer(tmp_path, wait_for=2)  # a lone process gives up waiting after 20 s
    seen = []
    start = time.monotonic()
    outcome = launcher.render_batches(
        _items(tmp_path, ["a", "b", "bad", "c"]), RenderSettings(engine="workbench"), blender, jobs=2,
        on_done=lambda item_id, error: seen.append(item_id),
    )  # fmt: skip
    assert time.monotonic() - start < 15, "the two batches ran at the same time"
    assert outcome == {"a": None, "b": None, "bad": "bad mesh", "c": None}
    assert sorted(seen) == ["a", "b", "bad", "c"]
    assert len(list((tmp_path / "marks").glob("started-*"))) == 2, "four meshes split into one batch per job"


def test_an_error_raised_in_one_job_stops_every_blender(tmp_path):
    blender = _fake_renderer(tmp_path, wait_for=2)

    def strict(item_id, error):
        if error is not None:
            raise RuntimeError(f"--strict: {item_id}")

    start = time.monotonic()
    with pytest.raises(RuntimeError, match="--strict: bad"):
        launcher.render_batches(_items(tmp_path, ["bad", "slow"]), RenderSettings(engine="workbench"), blender,
                                jobs=2, on_done=strict)  # fmt: skip
    assert time.monotonic() - start < 30, "the slow job's Blender was killed, not waited for (it sleeps 60 s)"
    for mark in (tmp_path / "marks").glob("started-*"):
        with pytest.raises(ProcessLookupError):
            os.kill(int(mark.name.removeprefix("started-")), 0)
