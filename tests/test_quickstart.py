"""The quickstart end to end at a tiny size (30 shapes, 2 training steps, ~1 min): its report, its three
queries, a second run that reuses every finished step, and steps that fail or are half-finished."""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hf_cmah.quickstart import QuickstartError, main, quickstart_outputs
from hf_cmah.quickstart import steps as quickstart_steps
from hf_cmah.quickstart.queries import RELIT_BACKGROUND
from tests.conftest import REPO_ROOT, SHARED_DATA

BLENDER_PYTHON = REPO_ROOT / ".venv-blender" / "bin" / "python"
TINY = ["--per-category", "3", "--steps", "2"]
REUSED_STEPS = ("library", "train", "eval", "index")
FRAME_COLOURS = np.array([(44, 160, 44), (214, 39, 40)])  # matplotlib's tab:green and tab:red
pytestmark = [
    pytest.mark.slow,
    pytest.mark.blender,
    pytest.mark.skipif(not BLENDER_PYTHON.is_file(), reason="no .venv-blender: run `make blender-env`"),
]


@dataclass(frozen=True)
class Run:
    out: Path
    printed: str


def run_quickstart(out: Path, *extra: str) -> Run:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["--out", str(out), *TINY, *extra]) == 0
    return Run(out, printed.getvalue())


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> Run:
    return run_quickstart(tmp_path_factory.mktemp("quickstart") / "out")


@pytest.fixture
def copied_run(first_run, tmp_path) -> Path:
    """A copy of the first run's folder, for tests that break a step."""
    return Path(shutil.copytree(first_run.out, tmp_path / "out"))


def frame_edges(grid: Path) -> int:
    """How many horizontal frame edges (green or red lines ≥ 40 px long) the grid has, top to bottom."""
    pixels = np.asarray(Image.open(grid).convert("RGB"), dtype=np.int32)
    near = (np.abs(pixels[:, :, None, :] - FRAME_COLOURS).max(axis=-1) < 40).any(axis=-1)  # (H, W)
    longest = [
        max((len(run) for run in "".join("1" if p else "0" for p in line).split("0")), default=0) for line in near
    ]
    on_edge = np.array(longest) >= 40
    return int(np.count_nonzero(on_edge[1:] & ~on_edge[:-1]) + on_edge[0])


def test_report_links_resolve_to_pictures_and_the_grid_has_a_row_per_query(first_run):
    report = quickstart_outputs(first_run.out)["report"]
    text = report.read_text()
    assert "| trained cmah-tiny |" in text and "| random-64 |" in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) == 3, links  # Precision@Top-K, t-SNE, the search grid
    for link in links:
        assert not Path(link).is_absolute()
        target = report.parent / link
        assert target.read_bytes().startswith(b"\x89PNG"), link
        assert Image.open(target).size[0] > 100
    queries = 3 if (SHARED_DATA / "psb_v1_mini").is_dir() else 2
    grid = quickstart_outputs(first_run.out)["grid"]
    assert frame_edges(grid) == 2 * queries, "each row: a top and a bottom edge of its 5 framed hits"


def test_three_queries_the_model_never_trained_on(first_run):
    outputs = quickstart_outputs(first_run.out)
    for name in ("held-out render", "relit render"):
        assert f"\n{name} (" in first_run.printed
    assert "relit render (chair)" in first_run.printed
    corner = np.asarray(Image.open(outputs["relit_query"]).convert("RGB"))[0, 0]
    assert tuple(corner) == RELIT_BACKGROUND, "the relit render is on its own background"
    if (SHARED_DATA / "psb_v1_mini").is_dir():
        assert re.search(r"\nPSB thumbnail \(airplane\): \S+/m\d+_thumb\.jpg", first_run.printed)
        assert not list(first_run.out.rglob("*_thumb.jpg")), "the PSB's files are never copied"
    else:
        assert "note: skipped the PSB thumbnail" in first_run.printed
    for rank in range(1, 6):
        assert first_run.printed.count(f"\n  {rank}. ") == (3 if (SHARED_DATA / "psb_v1_mini").is_dir() else 2)
    last = first_run.printed.rstrip().splitlines()[-4:]
    assert str(outputs["report"]) in last[0] and "make demo" in last[1] and "make blender-addon" in last[2]


def test_a_second_run_reuses_every_finished_step(first_run):
    model_file = quickstart_outputs(first_run.out)["model"] / "model.safetensors"
    trained = model_file.stat().st_mtime_ns
    again = run_quickstart(first_run.out)
    for step in REUSED_STEPS:
        assert f"reusing {step}: " in again.printed
    assert "$ hf-cmah" not in again.printed, "no step's command ran again"
    assert model_file.stat().st_mtime_ns == trained


def test_other_settings_are_refused_not_reused(first_run):
    with pytest.raises(QuickstartError, match=r'step "train" failed: .*made with .*steps.: 2.*delete it to redo'):
        main(["--out", str(first_run.out), "--per-category", "3", "--steps", "3"])


def test_a_failing_step_stops_the_run_with_its_name(copied_run, monkeypatch):
    outputs = quickstart_outputs(copied_run)
    shutil.rmtree(outputs["index"])
    outputs["report"].unlink()
    real_cli = quickstart_steps.cli_main
    monkeypatch.setattr(
        quickstart_steps, "cli_main", lambda args: 2 if args[:2] == ["index", "build"] else real_cli(args)
    )
    with pytest.raises(QuickstartError, match=r'^quickstart: step "index" failed: `hf-cmah index build .*status 2'):
        main(["--out", str(copied_run), *TINY])
    assert not outputs["report"].exists(), "nothing after the failed step ran"


def test_a_bad_out_fails_the_first_step(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.raises(QuickstartError, match=r'step "library" failed'):
        main(["--out", str(not_a_folder), *TINY])


def test_a_half_saved_model_is_resumed_not_reused(copied_run, monkeypatch):
    outputs = quickstart_outputs(copied_run)
    (outputs["model"] / "eval_results.json").unlink()  # save_pretrained's last file: the save was cut short
    commands = []
    monkeypatch.setattr(quickstart_steps, "cli_main", lambda args: commands.append(args) or 0)
    with pytest.raises(QuickstartError, match=r'step "train" failed: it finished but .*train is incomplete'):
        main(["--out", str(copied_run), *TINY])
    assert commands[-1][0] == "train" and commands[-1][-1] == "--resume", "resumed from its checkpoints"
