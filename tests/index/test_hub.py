"""Shape libraries on the Hub: from_pretrained of a local folder and of a dataset repo in an offline HF_HOME
cache; push_to_hub and `hf-cmah index push` against a loopback Hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from hf_cmah.cli import main
from hf_cmah.errors import IncompatibleIndexError, InvalidInputError
from hf_cmah.index import ModelFingerprint, ShapeIndex
from hf_cmah.index.assets import image_png, store_asset
from hf_cmah.modeling import CMAHConfig, CMAHModel
from tests.conftest import REPO_ROOT
from tests.loopback_hub import LoopbackHub, cached_snapshot, loopback_hub, materialise

REPO_ID = "hf-cmah-tests/tiny-library"
COMMIT = "89abcdef0123456789abcdef0123456789abcdef"


@pytest.fixture
def saved_index(model, tmp_path):
    """Six shapes with embeddings; the first two have a thumbnail asset."""
    rng = np.random.default_rng(0)
    thumbnails = [
        store_asset(tmp_path / "work", image_png(Image.new("RGB", (4, 4), (shade,) * 3)), ".png") for shade in (0, 90)
    ]
    index = ShapeIndex.from_codes(
        rng.integers(0, 256, (6, 4), dtype=np.uint8),
        [f"shape-{number}" for number in range(6)],
        labels=["chair", "lamp"] * 3,
        thumbnails=[*thumbnails, None, None, None, None],
        embeddings=rng.normal(size=(6, 8)),
        fingerprint=ModelFingerprint.of(model),
    )
    index.asset_root = tmp_path / "work"
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
    snapshot = cached_snapshot(tmp_path / "home" / "hub", "dataset", REPO_ID, saved_index, COMMIT)
    (snapshot / "README.md").write_text("---\nlicense: other\n---\n")
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


def test_push_uploads_the_index_with_a_card_in_one_commit_and_a_repush_drops_stale_files(
    model, saved_index, tmp_path, monkeypatch
):
    from huggingface_hub import HfApi, constants

    repo_id = "user/tiny-library"
    with loopback_hub() as endpoint:
        api = HfApi(endpoint=endpoint, token="hf_test")
        url = ShapeIndex.load(saved_index).push_to_hub(repo_id, model_id="user/cmah-32", license="cc-by-4.0", api=api)
        first = dict(LoopbackHub.repos[repo_id])
        codes_only = ShapeIndex.load(saved_index)
        codes_only = ShapeIndex.from_codes(codes_only.codes, codes_only.shape_ids, fingerprint=codes_only.fingerprint)
        codes_only.save(tmp_path / "codes-only")
        monkeypatch.setattr(constants, "ENDPOINT", endpoint)  # what HF_ENDPOINT sets, for the CLI's HfApi()
        monkeypatch.setenv("HF_TOKEN", "hf_test")
        assert main(["index", "push", str(tmp_path / "codes-only"), repo_id, "--private"]) == 0
        second = dict(LoopbackHub.repos[repo_id])

    assert url.endswith(f"/{repo_id}/commit/" + "a" * 40)
    stored = {name for name in first if name.startswith("assets/")}
    assert len(stored) == 2 and {"manifest.json", "codes.u8", "embeds.f16.npy", "metadata.parquet", "README.md"} < set(
        first
    )
    card = first["README.md"].decode()
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["license"] == "cc-by-4.0" and "hf-cmah" in header["tags"]
    assert header["shape_index"] == {
        "model": "user/cmah-32",
        "model_config_hash": ModelFingerprint.of(model).config_hash,
        "code_bits": 32,
        "count": 6,
    }
    assert f'ShapeIndex.from_pretrained("{repo_id}", model=model)' in card
    assert f"hf-cmah serve --model user/cmah-32 --index {repo_id}" in card and "2 thumbnails (PNG)" in card
    pulled = ShapeIndex.load(materialise(first, tmp_path / "first"), model=model)  # the card does not disturb loading
    hit = pulled.search(pulled.codes[1], k=1, with_metadata=True)
    assert hit.ids == [["shape-1"]] and Image.open(pulled.asset_path(hit.metadata[0][0]["thumbnail"])).getpixel(
        (0, 0)
    ) == (90, 90, 90)

    assert set(second) == {"manifest.json", "codes.u8", "metadata.parquet", "README.md"}  # embeddings, assets deleted
    assert yaml.safe_load(second["README.md"].decode().split("---\n")[1])["license"] == "other"
    assert "Not stated" in second["README.md"].decode()
    assert ShapeIndex.load(materialise(second, tmp_path / "second")).embeddings is None
