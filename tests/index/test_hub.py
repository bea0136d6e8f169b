"""Shape libraries on the Hub: from_pretrained of a local folder, of a dataset repo in an offline HF_HOME cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from hf_cmah.errors import IncompatibleIndexError, InvalidInputError
from hf_cmah.index import ModelFingerprint, ShapeIndex
from hf_cmah.modeling import CMAHConfig, CMAHModel
from tests.conftest import REPO_ROOT

REPO_ID = "hf-cmah-tests/tiny-library"
COMMIT = "89abcdef0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return CMAHModel(CMAHConfig.from_preset("cmah-tiny", code_bits=32))


@pytest.fixture
def saved_index(model, tmp_path):
    codes = np.random.default_rng(0).integers(0, 256, (6, 4), dtype=np.uint8)
    index = ShapeIndex.from_codes(
        codes,
        [f"shape-{number}" for number in range(6)],
        labels=["chair", "lamp"] * 3,
        fingerprint=ModelFingerprint.of(model),
    )
    index.save(tmp_path / "library.index")
    return tmp_path / "library.index"


def test_from_pretrained_loads_a_local_folder_with_a_card_and_checks_the_model(model, saved_index):
    (saved_index / "README.md").write_text("---\nlicense: cc0-1.0\n---\n# a card the manifest does not list\n")
    loaded = ShapeIndex.from_pretrained(saved_index, model=model)
    assert loaded.shape_ids == ShapeIndex.load(saved_index).shape_ids and loaded.encoder is not None
    assert loaded.search(loaded.codes[4], k=1).ids == [["shape-4"]]
    torch.manual_seed(1)
    with pytest.raises(IncompatibleIndexError, match="weights"):
        ShapeIndex.from_pretrained(saved_index, model=CMAHModel(CMAHConfig.from_preset("cmah-tiny", code_bits=32)))
    with pytest.raises(InvalidInputError, match=r"revision: .* is a local folder"):
        ShapeIndex.from_pretrained(saved_index, revision="main")
    with pytest.raises(InvalidInputError, match=r"'\./no/such/folder' is not an index folder, nor a Hub dataset id"):
        ShapeIndex.from_pretrained("./no/such/folder")


def test_from_pretrained_reads_a_dataset_repo_from_an_offline_hub_cache(saved_index, tmp_path):
    """HF_HOME holds `datasets--org--name/snapshots/<rev>` + refs/main; HF_HUB_OFFLINE=1 reaches no network."""
    snapshot = tmp_path / "home" / "hub" / f"datasets--{REPO_ID.replace('/', '--')}" / "snapshots" / COMMIT
    shutil.copytree(saved_index, snapshot)
    (snapshot / "README.md").write_text("---\nlicense: other\n---\n")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text(COMMIT)
    code = textwrap.dedent(f"""
        import json
        from hf_cmah.errors import InvalidInputError
        from hf_cmah.index import ShapeIndex
        index = ShapeIndex.from_pretrained("{REPO_ID}")
        hit = index.search(index.codes[2], k=1, with_metadata=True)
        try:
            ShapeIndex.from_pretrained("hf-cmah-tests/not-cached")
        except InvalidInputError as error:
            message = str(error)
        print(json.dumps([str(index.asset_root), hit.ids, hit.metadata[0][0]["label"], message]))
    """)
    env = {**os.environ, "HF_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    root, ids, label, message = json.loads(result.stdout.strip().splitlines()[-1])
    assert root == str(snapshot) and ids == [["shape-2"]] and label == "chair"
    assert "not in the Hub cache while the Hub cannot be reached (HF_HUB_OFFLINE=1" in message
