"""The pre-aligned trainer end to end through `hf-cmah train` on a tiny built dataset: InfoNCE on hard-neighbour
batches trains, beats random codes, resumes after a kill exactly, and `max_steps: 0` re-scores a saved model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.training.runs import killed_copy, losses

STEPS_PER_EPOCH = 3  # 24 train shapes in batches of 8


def hf_cmah_train(config: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "hf_cmah.cli", "train", str(config), *extra]
    environment = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TQDM_DISABLE": "1",
    }
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)


@pytest.fixture(scope="module")
def trained_run(synthetic_dataset, tmp_path_factory):
    """prealigned-tiny, InfoNCE on hard-neighbour batches, 4 epochs of 3 steps, checkpoints every 4 steps."""
    folder = tmp_path_factory.mktemp("prealigned")
    config = folder / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "extends": str(
                    Path(__file__).resolve().parents[2] / "hf_cmah/training/configs/prealigned-psb-infonce.yaml"
                ),
                "data": {"path": str(synthetic_dataset), "image_kind": "render"},
                "training": {
                    "batch_size": 8,
                    "seeds_per_batch": 4,
                    "hard_neighbour_batches": True,
                    "max_steps": 4 * STEPS_PER_EPOCH,
                    "warmup_steps": 2,
                    "point_pool": 0,
                },
                "output": {"dir": str(folder / "run"), "checkpoint_every": 4, "eval_every": 6, "log_every": 1},
            }
        )
    )
    result = hf_cmah_train(config)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return config, folder / "run"


def test_training_writes_logs_checkpoints_and_a_model_that_beats_random_codes(trained_run, synthetic_dataset):
    from transformers import AutoModel, AutoProcessor

    import hf_cmah  # noqa: F401  (Auto registration)
    from hf_cmah.data import load_built_dataset
    from hf_cmah.evaluation.retrieval import encode_images, encode_shapes, image_rows, random_codes, score_retrieval

    _, run = trained_run
    assert [step for step, _ in losses(run)] == list(range(1, 13))
    assert all(np.isfinite(loss) for _, loss in losses(run))
    assert sorted(path.name for path in (run / "checkpoints").iterdir()) == ["step_12", "step_8"]
    model = AutoModel.from_pretrained(run / "final").eval()
    processor = AutoProcessor.from_pretrained(run / "final")  # saved beside the model
    assert processor.image_mean != [0.485, 0.456, 0.406]  # CLIP normalisation, not ImageNet's
    test = load_built_dataset(synthetic_dataset)["test"]
    queries, column = image_rows(test, "render")
    images, shapes = encode_images(model, processor, queries, 64, column), encode_shapes(model, processor, test)
    trained = score_retrieval(images, shapes)["image_to_shape_cosine"]["map@all"]
    chance = score_retrieval(random_codes(images, 64, seed=0), random_codes(shapes, 64, seed=1))["image_to_shape"]
    assert trained > chance["map@all"] + 0.2, (trained, chance["map@all"])
    # The trainer's own evaluation (hf_cmah.evaluation, main process) saw the same model.
    results = json.loads((run / "final" / "eval_results.json").read_text())
    assert results["image_to_shape_cosine/map@all"] == pytest.approx(trained)


def test_resume_after_a_kill_reproduces_the_uninterrupted_run(trained_run):
    """Killed after step 10: newest checkpoint step_8 (mid-epoch 2, whose neighbour batches come from the checkpoint)."""
    from safetensors.torch import load_file

    config, run = trained_run
    killed = killed_copy(run, "step_12", logged_steps=10)

    result = hf_cmah_train(config, f"--set=output.dir={killed}", "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stdout + result.stderr
    resumed, uninterrupted = losses(killed), losses(run)
    assert [step for step, _ in resumed] == list(range(1, 13))
    assert [loss for _, loss in resumed] == pytest.approx([loss for _, loss in uninterrupted], rel=1e-5, abs=1e-6)
    saved, expected = load_file(killed / "final" / "model.safetensors"), load_file(run / "final" / "model.safetensors")
    assert all(np.allclose(saved[key].numpy(), expected[key].numpy(), atol=1e-5) for key in expected)


def test_max_steps_zero_evaluates_a_pretrained_model_as_it_scored_when_trained(trained_run, tmp_path):
    config, run = trained_run
    result = hf_cmah_train(
        config,
        "--set=model.preset=null",
        f"--set=model.pretrained={run / 'final'}",
        "--set=training.max_steps=0",
        f"--set=output.dir={tmp_path / 'zero-shot'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (tmp_path / "zero-shot" / "checkpoints").exists() or not any(
        (tmp_path / "zero-shot" / "checkpoints").iterdir()
    )
    scored = json.loads((tmp_path / "zero-shot" / "final" / "eval_results.json").read_text())
    trained = json.loads((run / "final" / "eval_results.json").read_text())
    assert scored == pytest.approx(trained)


def test_resume_and_fresh_start_rules_are_the_cmah_ones(trained_run, tmp_path, capsys):
    from hf_cmah.training.train_prealigned import main

    config, _ = trained_run
    assert main([str(config)]) == 2
    assert "already holds checkpoints: add --resume" in capsys.readouterr().err
    assert main([str(config), f"--set=output.dir={tmp_path / 'empty'}", "--resume"]) == 2
    assert "--resume: no checkpoint in" in capsys.readouterr().err
    assert not (tmp_path / "empty").exists()  # refused before anything was written


def test_each_family_entry_point_refuses_the_other_familys_config(capsys):
    from hf_cmah.training.train_cmah import main as train_cmah
    from hf_cmah.training.train_prealigned import main as train_prealigned

    assert train_cmah(["prealigned-psb-infonce"]) == 2
    assert "model.family is 'prealigned', not 'cmah'" in capsys.readouterr().err
    assert train_prealigned(["tiny-cpu"]) == 2
    assert "model.family is 'cmah', not 'prealigned'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("contents", "message"),
    [
        ("model: {family: prealigned, preset: prealigned-tiny\n", "not valid YAML"),
        (
            "model: {family: prealigned, preset: prealigned-tiny}\ntraining: {epochs: 30}\n",
            "unknown key training.'epochs'",
        ),
        (
            "model: {family: prealigned, preset: prealigned-tiny}\ntraining: {hard_neighbour_batches: 'yes'}\n",
            "training.hard_neighbour_batches must be of type bool, got 'yes'",
        ),
        ("model: {family: prealigned}\n", "give exactly one of model.preset and model.pretrained, got neither"),
        ("model: {family: dual}\n", "model.family must be one of cmah, prealigned, got 'dual'"),
    ],
)
def test_a_bad_config_is_one_error_line_naming_the_problem(tmp_path, capsys, contents, message):
    from hf_cmah.training.train import main

    path = tmp_path / "run.yaml"
    path.write_text(contents)
    assert main([str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and message in lines[0] and str(path) in lines[0], lines


def test_hf_cmah_train_reports_a_missing_config_in_one_line(tmp_path):
    result = hf_cmah_train(tmp_path / "missing.yaml")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "config file not found" in errors[0] and "missing.yaml" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
