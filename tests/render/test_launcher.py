"""The render launcher without Blender: settings, deterministic views, finding Blender."""

from __future__ import annotations

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
