"""Indexes and trained folders across the CMAHModel / CMAHForPreTraining split: an index built before it
hashed the pre-training head with the encoders (the single class held both); the retrieval model loaded
from the same folder now holds only the encoders, and must still be taken, while other weights are not."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel

from hf_cmah import CMAHConfig, CMAHForPreTraining
from hf_cmah.errors import IncompatibleIndexError
from hf_cmah.index import ModelFingerprint, ShapeIndex
from hf_cmah.index.storage import weights_hash


def trained_folder(folder: Path, seed: int) -> Path:
    """What CMAH training saves (CMAHForPreTraining: encoders under ``cmah.`` and the pre-training head)."""
    torch.manual_seed(seed)
    CMAHForPreTraining(CMAHConfig.from_preset("cmah-tiny", code_bits=32)).save_pretrained(folder)
    return folder


def single_class_folder(folder: Path, seed: int) -> Path:
    """The same, in the layout of the single class before the split: every weight at the top level."""
    trained_folder(folder, seed)
    weights = load_file(folder / "model.safetensors")
    save_file({key.removeprefix("cmah."): value for key, value in weights.items()}, folder / "model.safetensors")
    return folder


def index_with(fingerprint: ModelFingerprint, folder: Path) -> Path:
    index = ShapeIndex.from_codes(np.zeros((2, 4), np.uint8), ["a", "b"])
    index.fingerprint = fingerprint
    index.save(folder)
    return folder


def before_the_split(model_folder: Path) -> ModelFingerprint:
    """The fingerprint an index build stored then: the model loaded from the folder held every tensor of it."""
    retrieval = AutoModel.from_pretrained(model_folder)
    whole = SimpleNamespace(state_dict=lambda: load_file(model_folder / "model.safetensors"))
    return ModelFingerprint(None, None, ModelFingerprint.of(retrieval).config_hash, weights_hash(whole))


def test_an_index_built_before_the_split_takes_the_model_of_its_folder(tmp_path):
    old_model = single_class_folder(tmp_path / "old-model", seed=0)
    index = index_with(before_the_split(old_model), tmp_path / "index")
    assert json.loads((index / "manifest.json").read_text())["model"]["weights_hash"].startswith("float32:")
    retrieval = AutoModel.from_pretrained(old_model)
    assert weights_hash(retrieval) != ShapeIndex.load(index).fingerprint.weights_hash  # the head is not in it
    ShapeIndex.load(index, model=retrieval)  # taken: the folder it was built from
    with pytest.raises(IncompatibleIndexError, match=r"same config, but .* weights"):
        ShapeIndex.load(index, model=AutoModel.from_pretrained(single_class_folder(tmp_path / "other", seed=1)))


def test_an_index_built_now_takes_the_retrieval_model_of_a_trained_folder(tmp_path):
    folder = trained_folder(tmp_path / "model", seed=0)
    index = index_with(ModelFingerprint.of(AutoModel.from_pretrained(folder)), tmp_path / "index")
    ShapeIndex.load(index, model=AutoModel.from_pretrained(folder))
    with pytest.raises(IncompatibleIndexError, match=r"same config, but .* weights"):
        ShapeIndex.load(index, model=AutoModel.from_pretrained(trained_folder(tmp_path / "other", seed=1)))
