"""Model cards and `push_model`, against a loopback stand-in for the Hub (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hf_cmah import CMAHConfig, CMAHModel, CMAHProcessor
from hf_cmah.errors import InvalidInputError
from hf_cmah.hub import build_model_card, push_model, write_model_card
from tests.loopback_hub import LoopbackHub, loopback_hub

RESULTS = {
    "image_to_shape": {"map@all": 0.4321, "p@10": 0.5, "acc@1": 0.125, "acc@10": 0.625},
    "shape_to_image": {"map@all": 0.3, "p@10": 0.4, "acc@1": 0.1, "acc@10": 0.5},
}


@pytest.fixture
def saved_model(tmp_path):
    config = CMAHConfig.from_preset("cmah-tiny", code_bits=32)
    folder = tmp_path / "cmah-tiny-32"
    CMAHModel(config).save_pretrained(folder)
    CMAHProcessor.from_model_config(config).save_pretrained(folder)
    return folder


def card_metadata(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_card_yaml_parses_and_carries_the_results(saved_model):
    card = build_model_card(saved_model, "user/cmah-tiny-32", RESULTS, ["user/psb-v1-mini"], "PSB v1 test")
    metadata = card_metadata(str(card))
    assert metadata["library_name"] == "transformers"
    assert "hf-cmah" in metadata["tags"]
    assert metadata["datasets"] == ["user/psb-v1-mini"]
    results = metadata["model-index"][0]["results"]
    values = {(r["task"]["name"], m["name"]): m["value"] for r in results for m in r["metrics"]}
    assert values[("image to shape", "image→shape mAP@all")] == 0.4321
    assert values[("shape to image", "shape→image Acc@1")] == 0.1
    assert all(r["dataset"]["name"] == "PSB v1 test" for r in results)
    body = str(card)
    assert 'AutoModel.from_pretrained("user/cmah-tiny-32")' in body
    assert "| image → shape | 0.432 | 0.500 | 0.125 | 0.625 |" in body
    assert "32-bit hash codes" in body


def test_card_without_results_has_no_model_index(saved_model):
    metadata = card_metadata(Path(write_model_card(saved_model)).read_text())
    assert "model-index" not in metadata
    with pytest.raises(InvalidInputError, match=r"no config\.json"):
        build_model_card(saved_model.parent)


def test_push_uploads_model_processor_and_card_to_a_loopback_hub(saved_model):
    from huggingface_hub import HfApi

    with loopback_hub() as endpoint:
        write_model_card(saved_model, "user/cmah-tiny-32", results=RESULTS)
        url = push_model(saved_model, "user/cmah-tiny-32", api=HfApi(endpoint=endpoint, token="hf_test"))
    assert url.endswith("/user/cmah-tiny-32/commit/" + "a" * 40)
    uploaded = LoopbackHub.repos["user/cmah-tiny-32"]
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= set(uploaded)
    assert uploaded["model.safetensors"] == (saved_model / "model.safetensors").read_bytes()
    assert card_metadata(uploaded["README.md"].decode())["model-index"]
    assert LoopbackHub.validated


def test_push_command_takes_this_models_results(saved_model, tmp_path, capsys):
    import argparse

    from hf_cmah.cli.push import add_commands

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    results = tmp_path / "results.json"
    other = {direction: {**scores, "map@all": 0.9} for direction, scores in RESULTS.items()}
    results.write_text(json.dumps({"results": {"other/final": other, str(saved_model): RESULTS}}))
    args = parser.parse_args(["push", str(saved_model), "user/m", "--results", str(results), "--card-only"])
    assert args.handler(args) == 0
    assert "| image → shape | 0.432 |" in (saved_model / "README.md").read_text()
    args = parser.parse_args(["push", str(saved_model), "user/m", "--results", str(results), "--results-key", "x"])
    with pytest.raises(ValueError, match="no results for 'x'"):
        args.handler(args)
