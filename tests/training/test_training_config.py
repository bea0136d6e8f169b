"""The YAML training config: every shipped recipe loads; bad values fail with the key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from hf_cmah.errors import ConfigError
from hf_cmah.training.config import config_from_dict, load_training_config

CONFIGS = Path(__file__).resolve().parents[2] / "hf_cmah" / "training" / "configs"
CMAH_RECIPES = ["tiny-cpu.yaml", "gpu-base.yaml"] + [
    f"{dataset}-{bits}.yaml" for dataset in ("modelnet40", "shapenet55", "shapenetrender") for bits in (16, 32, 64, 128)
]


@pytest.mark.parametrize("name", CMAH_RECIPES)
def test_every_cmah_recipe_loads(name):
    path = CONFIGS / name
    config = load_training_config(path)
    model_config = config.model_config()
    assert model_config.code_bits == config.model.code_bits
    if "-" in path.stem and path.stem.split("-")[-1].isdigit():  # <dataset>-<bits>.yaml
        assert config.model.code_bits == int(path.stem.split("-")[-1])
        assert config.model.preset == "cmah-base"


def test_overrides_apply_last_and_parse_yaml_values():
    config = load_training_config(
        CONFIGS / "tiny-cpu.yaml",
        ["model.code_bits=16", "training.learning_rate=3e-4", "model.overrides.masked_contrastive_weight=0"],
    )
    assert config.model.code_bits == 16
    assert config.training.learning_rate == 3e-4
    assert config.model_config().masked_contrastive_weight == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"training": {"learning_rate": -1.0}}, r"training.learning_rate must be > 0, got -1.0"),
        ({"training": {"batch_size": "32"}}, r"training.batch_size must be of type int, got '32'"),
        ({"training": {"batch_size": 1}}, r"training.batch_size must be >= 2"),
        ({"training": {"max_steps": True}}, r"training.max_steps must be of type int"),
        ({"training": {"mixed_precision": "fp8"}}, r"mixed_precision must be auto, no, bf16 or fp16"),
        (
            {"training": {"learnig_rate": 1.0}},
            r"unknown key training.'learnig_rate' \(did you mean 'learning_rate'\?\)",
        ),
        ({"optimiser": {}}, r"unknown key 'optimiser'"),
        ({"model": {"preset": "cmah-huge"}}, r"model.preset must be one of \['cmah-base', 'cmah-tiny'\]"),
        ({"model": {"code_bits": 12}}, r"model.code_bits must be a positive multiple of 8, got 12"),
        ({"model": {"overrides": {"hiden_size": 64}}}, r"unknown key model.overrides.'hiden_size'"),
        ({"model": {"overrides": {"image_mask_ratio": 1.5}}}, r"model: image_mask_ratio must lie in \[0, 1\)"),
        ({"output": {"report_to": "wandb"}}, r"output.report_to must be tensorboard or none"),
        ({"data": []}, r"section 'data' must be a mapping"),
        ({"training": {"loss": "triplet"}}, r"training.loss must be infonce, hcl or supcon, got 'triplet'"),
        ({"model": {"pretrained": "no/such/run"}}, r"model.pretrained: no/such/run is not a save_pretrained folder"),
    ],
)
def test_bad_values_name_the_source_key_and_problem(data, message):
    with pytest.raises(ConfigError, match=message) as error:
        config_from_dict(data, source="run.yaml")
    assert str(error.value).startswith("run.yaml: ")


def test_file_errors(tmp_path):
    looping = tmp_path / "a.yaml"
    looping.write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="loops back"):
        load_training_config(looping)
    broken = tmp_path / "broken.yaml"
    broken.write_text("training: {batch_size: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_training_config(broken)
    with pytest.raises(ConfigError, match="not found"):
        load_training_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"must look like section\.key=value"):
        load_training_config(CONFIGS / "tiny-cpu.yaml", ["code_bits=16"])


def test_a_bundled_config_is_found_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # as from an installed wheel: no checkout around
    by_name = load_training_config("tiny-cpu", ["model.code_bits=32"])
    assert by_name.source == str(CONFIGS.resolve() / "tiny-cpu.yaml")
    assert by_name.model_config().code_bits == 32
    assert load_training_config("tiny-cpu.yaml").source == by_name.source
    with pytest.raises(ConfigError, match="no bundled config has that name"):
        load_training_config("tiny-gpu")


def test_the_cmah_finetune_recipe_starts_from_tiny_cpus_final_model():
    with pytest.raises(ConfigError, match=r"model.pretrained: runs/tiny-cpu-64/final is not a save_pretrained"):
        load_training_config("tiny-cpu-finetune")


def test_a_pretrained_cmah_must_be_the_preset_at_its_code_length(tmp_path):
    from hf_cmah import CMAHConfig

    CMAHConfig.from_preset("cmah-tiny", code_bits=32, contrastive_temperature=0.2).save_pretrained(tmp_path)
    config = load_training_config(
        "tiny-cpu",
        [f"model.pretrained={tmp_path}", "model.code_bits=32", "model.overrides.image_reconstruction_weight=0"],
    )
    model_config = config.model_config()
    assert model_config.contrastive_temperature == 0.2  # the folder's values, not the preset's
    assert model_config.image_reconstruction_weight == 0  # the overrides on top
    with pytest.raises(ConfigError, match=r"has code_bits = 32, but model.preset 'cmah-tiny' at model.code_bits 64"):
        load_training_config("tiny-cpu", [f"model.pretrained={tmp_path}"])
    with pytest.raises(ConfigError, match=r"has decoder_hidden_size = 64, but model.preset 'cmah-base'"):
        load_training_config(
            "tiny-cpu", [f"model.pretrained={tmp_path}", "model.code_bits=32", "model.preset=cmah-base"]
        )


@pytest.mark.parametrize("name", ["prealigned-psb-infonce", "prealigned-psb-hcl"])
def test_prealigned_recipes_load_into_their_family_schema(name):
    from hf_cmah.training.config import PreAlignedTrainingConfig

    config = load_training_config(name)
    assert isinstance(config, PreAlignedTrainingConfig) and config.family == "prealigned"
    assert config.training.loss == ("hcl" if name.endswith("hcl") else "infonce")
    assert config.model_config().shape_config.num_points == 512  # prealigned-tiny
    assert config.training.max_steps == 390  # 30 epochs of the 427 PSB train pairs in batches of 32


def test_the_finetune_recipe_names_the_missing_converted_folder():
    with pytest.raises(ConfigError, match=r"model.pretrained: converted/openshape-vitg14 is not a save_pretrained"):
        load_training_config("prealigned-finetune-openshape")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"training": {"loss": "triplet"}}, r"training.loss must be infonce, hcl or supcon, got 'triplet'"),
        ({"training": {"max_steps": -1}}, r"training.max_steps must be >= 0 \(0: evaluate only\)"),
        ({"training": {"hcl_tau_plus": 1.0}}, r"training.hcl_tau_plus must lie in \[0, 1\)"),
        ({"training": {"projections_only": 1}}, r"training.projections_only must be of type bool, got 1"),
        ({"model": {"preset": "prealigned-huge"}}, r"model.preset must be one of \["),
        ({"model": {"preset": None}}, r"give exactly one of model.preset and model.pretrained, got neither"),
        ({"model": {"pretrained": "x"}}, r"give exactly one of model.preset and model.pretrained, got both"),
        (
            {"model": {"overrides": {"code_bit": 64}}},
            r"unknown key model.overrides.'code_bit' \(did you mean 'code_bits'",
        ),
        ({"model": {"family": "cmah", "preset": "prealigned-tiny"}}, r"model.preset must be one of \['cmah-base'"),
    ],
)
def test_bad_prealigned_values_name_the_key(data, message):
    base = {"model": {"family": "prealigned", "preset": "prealigned-tiny"}}
    merged = {**base, **data, "model": {**base["model"], **data.get("model", {})}}
    with pytest.raises(ConfigError, match=message):
        config_from_dict(merged, source="run.yaml")


def test_bare_overrides_still_work_for_one_release_with_a_warning():
    from hf_cmah.training.train import parse_args

    with pytest.warns(FutureWarning, match="--set training.seed=1"):
        args = parse_args(["prealigned-psb-hcl", "training.seed=1", "--set", "output.dir=/tmp/x"], "train_prealigned")
    assert args.overrides == ["training.seed=1", "output.dir=/tmp/x"]
