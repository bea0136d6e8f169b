"""hf_cmah.training.train_cmah end to end on CPU: a 10-step `accelerate launch` run, resume, evaluation of the result."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hf_cmah.training.config import bundled_configs
from tests.training.runs import killed_copy, losses

REPO = Path(__file__).resolve().parents[2]
# A model small enough for seconds per run; everything else comes from the tiny-cpu recipe.
MICRO_MODEL = {
    "image_size": 32,
    "patch_size": 8,
    "num_points": 128,
    "num_groups": 16,
    "group_size": 8,
    "hidden_size": 32,
    "image_num_hidden_layers": 1,
    "point_num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "decoder_hidden_size": 32,
    "decoder_num_attention_heads": 2,
    "decoder_intermediate_size": 64,
}


def launch(config: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(REPO / "training" / "accelerate" / "cpu.yaml"),
        "--num_cpu_threads_per_process", "1",
        "-m", "hf_cmah.training.train_cmah", str(config), *extra,
    ]  # fmt: skip
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TQDM_DISABLE": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)


@pytest.fixture(scope="module")
def trained_run(synthetic_dataset, tmp_path_factory):
    """10 steps, a checkpoint every 5, an evaluation at step 5 and at the end."""
    folder = tmp_path_factory.mktemp("train")
    config = folder / "micro.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "extends": str(bundled_configs()["tiny-cpu"]),
                "model": {"code_bits": 16, "overrides": MICRO_MODEL},
                "data": {"path": str(synthetic_dataset)},
                "training": {"batch_size": 8, "max_steps": 10, "warmup_steps": 2},
                "output": {
                    "dir": str(folder / "run"),
                    "checkpoint_every": 5,
                    "keep_checkpoints": 2,
                    "eval_every": 5,
                    "log_every": 1,
                },
            }
        )
    )
    result = launch(config)
    assert result.returncode == 0, result.stderr[-3000:]
    return config, folder / "run"


def test_ten_step_launch_writes_checkpoints_logs_and_model(trained_run):
    from transformers import AutoModel

    import hf_cmah  # noqa: F401  (Auto registration)

    _, run = trained_run
    assert [step for step, _ in losses(run)] == list(range(1, 11))
    assert sorted(path.name for path in (run / "checkpoints").iterdir()) == ["step_10", "step_5"]
    assert any((run / "logs").rglob("events.out.tfevents.*"))  # tensorboard tracker
    for folder in ("final", "best"):
        model = AutoModel.from_pretrained(run / folder)
        assert model.config.code_bits == 16
        assert (run / folder / "preprocessor_config.json").is_file()
    # The numbers saved beside final/ and best/ are those of the saved models, and best/ is the best of them.
    from transformers import AutoProcessor

    from hf_cmah.data import load_built_dataset
    from hf_cmah.evaluation import encode_images, encode_shapes, score_retrieval, summarize
    from hf_cmah.evaluation.retrieval import image_rows

    config, _ = trained_run
    test = load_built_dataset(yaml.safe_load(Path(config).read_text())["data"]["path"])["test"]
    saved = {}
    for folder in ("final", "best"):
        model, processor = AutoModel.from_pretrained(run / folder), AutoProcessor.from_pretrained(run / folder)
        queries, column = image_rows(test, "render")
        images = encode_images(model, processor, queries, 64, column, progress=False)
        rescored = summarize(score_retrieval(images, encode_shapes(model, processor, test, 64, progress=False)))
        saved[folder] = json.loads((run / folder / "eval_results.json").read_text())
        for key in ("image_to_shape/map@all", "image_to_shape/map@all_tie_aware", "shape_to_image/map@all"):
            assert rescored[key] == pytest.approx(saved[folder][key], abs=1e-6), (folder, key)
    assert saved["best"]["image_to_shape/map@all"] >= saved["final"]["image_to_shape/map@all"]


def test_resume_reproduces_the_uninterrupted_loss(trained_run):
    config, run = trained_run
    # A run killed after step 7: its newest checkpoint is step_5 and its log already holds steps 6–7.
    killed = killed_copy(run, "step_10", logged_steps=7)

    result = launch(config, f"--set=output.dir={killed}", "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stdout + result.stderr
    resumed, uninterrupted = losses(killed), losses(run)
    assert [step for step, _ in resumed] == list(range(1, 11))
    assert [loss for _, loss in resumed] == pytest.approx([loss for _, loss in uninterrupted], rel=1e-5, abs=1e-6)


def test_resume_after_the_last_checkpoint_saves_the_final_model(trained_run):
    """Killed between the step-10 checkpoint and the final save: --resume trains nothing and saves final/."""
    import torch
    from safetensors.torch import load_file

    config, run = trained_run
    killed = run.parent / "killed-at-the-end"
    shutil.copytree(run, killed)
    shutil.rmtree(killed / "final")
    result = launch(config, f"--set=output.dir={killed}", "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    assert losses(killed) == losses(run)  # no step was redone
    saved, expected = load_file(killed / "final" / "model.safetensors"), load_file(run / "final" / "model.safetensors")
    assert saved.keys() == expected.keys() and all(torch.equal(saved[k], expected[k]) for k in saved)


def test_finetuning_starts_from_the_trained_model_with_any_loss(trained_run, tmp_path):
    """``model.pretrained`` + ``training.loss``: every arm starts at the trained weights and differs only in the loss."""
    import torch
    from safetensors.torch import load_file

    config, run = trained_run
    trained = load_file(run / "final" / "model.safetensors")
    first_losses = {}
    for loss in ("hcl", "infonce", "supcon"):
        out = tmp_path / loss
        result = launch(
            config, f"--set=model.pretrained={run / 'final'}", f"--set=training.loss={loss}",
            "--set=training.max_steps=2", "--set=training.learning_rate=1e-9", "--set=output.eval_every=0",
            "--set=model.overrides.image_reconstruction_weight=0", "--set=model.overrides.point_reconstruction_weight=0",
            "--set=model.overrides.masked_contrastive_weight=0", f"--set=output.dir={out}",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        tuned = load_file(out / "final" / "model.safetensors")
        assert tuned.keys() == trained.keys()
        moved = [key for key in tuned if not torch.allclose(tuned[key], trained[key], atol=1e-6)]
        assert moved and all(".running_" in key or "num_batches_tracked" in key for key in moved), moved  # BN only
        saved = json.loads((out / "final" / "config.json").read_text())
        assert saved["image_reconstruction_weight"] == 0 and saved["code_bits"] == 16
        log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
        assert log[0]["image_reconstruction_loss"] == 0 == log[0]["point_reconstruction_loss"]  # no masked pass
        first_losses[loss] = log[0]["contrastive_loss"]
    # The same first batch (same seed, same weights): HCL weighs its hard negatives up, so its loss is larger.
    assert first_losses["hcl"] > first_losses["infonce"] > 0
    # supcon ran on the batches' labels (without them it raises). The trained model codes each synthetic class
    # alike, and SupCon over equal codes is InfoNCE: the two agree here; the unit tests tell them apart.
    assert first_losses["supcon"] == pytest.approx(first_losses["infonce"], rel=1e-2)


def test_the_hcl_arm_at_beta_0_and_supcon_with_distinct_labels_are_the_models_own_infonce():
    import torch

    from hf_cmah import CMAHConfig, CMAHForPreTraining
    from hf_cmah.training.config import load_training_config
    from hf_cmah.training.train_cmah import pair_loss_of

    model_config = CMAHConfig.from_preset("cmah-tiny", code_bits=16, **MICRO_MODEL, contrastive_temperature=0.2)
    torch.manual_seed(0)
    model = CMAHForPreTraining(model_config).eval()
    pixel_values, points = torch.rand(6, 3, 32, 32), torch.rand(6, 128, 3)
    noise = {"image_noise": torch.rand(6, model_config.num_patches), "point_noise": torch.rand(6, 16)}
    labels = torch.arange(6)
    infonce = load_training_config("tiny-cpu")
    assert pair_loss_of(infonce, model_config, labels) is None
    flat = pair_loss_of(
        load_training_config("tiny-cpu", ["training.loss=hcl", "training.hcl_beta=0"]), model_config, labels
    )
    hard = pair_loss_of(load_training_config("tiny-cpu", ["training.loss=hcl"]), model_config, labels)
    supcon = load_training_config("tiny-cpu", ["training.loss=supcon"])
    with torch.no_grad():
        own = model(pixel_values, points, **noise).contrastive_loss
        torch.testing.assert_close(model(pixel_values, points, **noise, pair_loss=flat).contrastive_loss, own)
        assert model(pixel_values, points, **noise, pair_loss=hard).contrastive_loss > own
        # supcon with every label distinct is InfoNCE; with shared labels it is another loss
        distinct = pair_loss_of(supcon, model_config, labels)
        torch.testing.assert_close(model(pixel_values, points, **noise, pair_loss=distinct).contrastive_loss, own)
        shared = pair_loss_of(supcon, model_config, torch.tensor([0, 0, 0, 1, 1, 1]))
        assert not torch.isclose(model(pixel_values, points, **noise, pair_loss=shared).contrastive_loss, own)


def test_fresh_start_refuses_a_folder_with_checkpoints_and_resume_needs_one(trained_run, tmp_path, capsys):
    from hf_cmah.training.train_cmah import main

    config, _ = trained_run
    assert main([str(config)]) == 2
    assert "already holds checkpoints: add --resume" in capsys.readouterr().err
    assert main([str(config), f"--set=output.dir={tmp_path / 'empty'}", "--resume"]) == 2
    assert "--resume: no checkpoint in" in capsys.readouterr().err


def test_eval_command_scores_renders_thumbnails_and_random_codes(trained_run, synthetic_dataset, tmp_path):
    import argparse

    from hf_cmah.cli.evaluate import add_commands

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    _, run = trained_run
    for queries in ("render", "thumbnail"):
        output = tmp_path / queries
        command = ["eval", str(run / "final"), "--data", str(synthetic_dataset), "--queries", queries]
        args = parser.parse_args([*command, "--random-baseline", "--output", str(output), "--device", "cpu"])
        assert args.handler(args) == 0
        evaluation = json.loads((output / "results.json").read_text())
        assert set(evaluation["results"]) == {str(run / "final"), "random-16"}
        scores = evaluation["results"][str(run / "final")]["image_to_shape"]
        # 12 test shapes; renders: 2 per shape, thumbnails: 1 per shape
        assert scores["num_queries"] == (24 if queries == "render" else 12)
        assert scores["num_database"] == 12
        for plot in ("precision_at_k.png", "tsne_shape_codes.png", "query_grid.png"):
            assert (output / plot).stat().st_size > 1000


def test_cached_and_decoded_batches_are_the_same_tensors(synthetic_dataset):
    """The in-memory cache of processed pairs changes speed only: epoch by epoch, the same batches."""
    import torch

    from hf_cmah import CMAHProcessor
    from hf_cmah.training.config import load_training_config
    from hf_cmah.training.train_cmah import get_dataloaders

    def epochs(cache_gib: float) -> list[dict]:
        config = load_training_config(
            bundled_configs()["tiny-cpu"],
            [f"data.path={synthetic_dataset}", f"data.cache_gib={cache_gib}", "training.batch_size=4"],
        )
        processor = CMAHProcessor.from_model_config(config.model_config())
        loader, pairs, _ = get_dataloaders(config, processor)
        assert (pairs.cache is not None) == (cache_gib > 0)
        batches = []
        for epoch in range(2):
            torch.manual_seed(epoch)  # the loader's shuffle
            pairs.set_epoch(epoch)
            batches += list(loader)
        return batches

    cached, decoded = epochs(2.0), epochs(0.0)
    assert len(cached) == len(decoded) > 2
    for left, right in zip(cached, decoded):
        assert torch.equal(left["pixel_values"], right["pixel_values"]) and torch.equal(left["points"], right["points"])
    assert not torch.equal(cached[0]["pixel_values"], cached[len(cached) // 2]["pixel_values"])  # epochs differ


def test_augmented_batches_are_new_each_epoch_and_the_same_on_a_rerun(synthetic_dataset):
    """data.augment: cached or decoded, a rerun (or a resume) sees the same images; epochs see new ones."""
    import torch

    from hf_cmah import CMAHProcessor
    from hf_cmah.training.config import load_training_config
    from hf_cmah.training.train_cmah import get_dataloaders

    def first_batch(epoch: int, cache_gib: float) -> dict:
        overrides = [f"data.path={synthetic_dataset}", f"data.cache_gib={cache_gib}", "training.batch_size=4"]
        overrides += ["data.augment=true", "data.augmentation={crop_scale: [0.5, 1.0], jpeg_p: 0.5}"]
        config = load_training_config(bundled_configs()["tiny-cpu"], overrides)
        processor = CMAHProcessor.from_model_config(config.model_config())
        _, pairs, _ = get_dataloaders(config, processor)
        assert pairs.augmentation.crop_scale == (0.5, 1.0) and (pairs.cache is not None) == (cache_gib > 0)
        pairs.set_epoch(epoch)
        return pairs.collate([pairs[index] for index in range(4)])

    first, again = first_batch(0, 2.0), first_batch(0, 2.0)
    assert torch.equal(first["pixel_values"], again["pixel_values"]) and torch.equal(first["points"], again["points"])
    assert torch.equal(first["pixel_values"], first_batch(0, 0.0)["pixel_values"]), "cached or decoded, the same"
    unaugmented = load_training_config(
        bundled_configs()["tiny-cpu"], [f"data.path={synthetic_dataset}", "training.batch_size=4"]
    )
    assert unaugmented.image_augmentation() is None
    later = first_batch(1, 2.0)
    assert not torch.equal(first["pixel_values"], later["pixel_values"]), "another epoch, other images"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.augmentation={blur_p: 0.5}"], "data.augment is false"),
        (["data.augment=true", "data.augmentation={blurr_p: 0.5}"], "data.augmentation.'blurr_p'"),
        (["data.augment=true", "data.augmentation={blur_p: 2}"], "augmentation.blur_p"),
    ],
)
def test_bad_augmentation_settings_name_the_key(overrides, message):
    from hf_cmah.errors import ConfigError
    from hf_cmah.training.config import load_training_config

    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("'", ".?")):
        load_training_config(bundled_configs()["tiny-cpu"], overrides)


def test_extra_train_datasets_join_the_train_pairs_and_eval_stays_on_the_main_one(tmp_path, synthetic_dataset):
    import datasets

    from hf_cmah import CMAHProcessor
    from hf_cmah.errors import ConfigError
    from hf_cmah.training.config import load_training_config
    from hf_cmah.training.pairs import load_pairs
    from tests.training.conftest import synthetic_split

    extra = tmp_path / "extra"
    (extra / "data").mkdir(parents=True)
    # The same shape ids as the main dataset (both are made by synthetic_split with seed 0): they must stay apart.
    # Its classes are named differently: labels join by name (its 0, 1, 2 are cube, torus, sphere).
    renamed = datasets.ClassLabel(names=["cube", "torus", "sphere"])
    synthetic_split(10, 3, seed=0).cast_column("label", renamed).to_parquet(
        str(extra / "data" / "train-00000-of-00001.parquet")
    )
    synthetic_split(4, 3, seed=5).to_parquet(str(extra / "data" / "test-00000-of-00001.parquet"))
    overrides = [f"data.path={synthetic_dataset}", "training.batch_size=4", f"data.extra_train={{{extra}: render}}"]
    config = load_training_config(bundled_configs()["tiny-cpu"], overrides)
    processor = CMAHProcessor.from_model_config(config.model_config())
    pairs, train_rows, eval_split = load_pairs(config, processor)
    assert len(pairs) == 24 + 10, "one pair per shape of both train splits"
    assert {shape_id.split("/")[0] for shape_id in train_rows["shape_id"]} == {"0", "1"}
    assert len(eval_split) == 12 * 2 and all(shape_id.startswith("s1_") for shape_id in eval_split["shape_id"])
    batch = pairs.collate([pairs[index] for index in range(len(pairs))])
    assert batch["pixel_values"].shape[0] == batch["points"].shape[0] == 34
    assert train_rows.features["label"].names == ["sphere", "cube", "rod", "torus"]
    names = [train_rows.features["label"].int2str(label) for label in train_rows["label"]]
    extra_names = [name for name, shape_id in zip(names, train_rows["shape_id"]) if shape_id.startswith("1/")]
    # synthetic_split: 3 rows per shape, shape i of class i % 3
    assert extra_names == [renamed.int2str(row // 3 % 3) for row in range(30)]
    pair_rows = [int(pairs.rows[index]) for index in range(len(pairs))]
    assert batch["labels"].tolist() == [train_rows["label"][row] for row in pair_rows]

    other = tmp_path / "other-points"
    (other / "data").mkdir(parents=True)
    synthetic_split(6, 1, seed=2, num_points=64).to_parquet(str(other / "data" / "train-00000-of-00001.parquet"))
    config = load_training_config(
        bundled_configs()["tiny-cpu"], [*overrides[:2], f"data.extra_train={{{other}: render}}"]
    )
    with pytest.raises(ConfigError, match="same points per shape"):
        load_pairs(config, processor)
    with pytest.raises(ConfigError, match=r"data\.extra_train"):
        load_training_config(bundled_configs()["tiny-cpu"], [*overrides[:2], "data.extra_train={a: 3}"])
