"""Query-domain calibration: thresholds split the calibration images in half on every bit, touch nothing else."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hf_cmah import CMAHConfig, CMAHModel, CMAHProcessor
from hf_cmah.errors import InvalidInputError
from hf_cmah.evaluation.calibration import MIN_CALIBRATION_IMAGES, bit_balance, calibrate_image_codes
from hf_cmah.index.storage import ModelFingerprint
from tests.conftest import mini_config


def domain_images(count: int, seed: int) -> list[Image.Image]:
    """Dim, reddish noise: a domain unlike anything the model has seen, with variety inside it."""
    generator = np.random.default_rng(seed)
    pixels = generator.integers(0, 90, (count, 32, 32, 3)) + np.array([120, 0, 0])
    return [Image.fromarray(image.astype(np.uint8)) for image in pixels]


@pytest.fixture
def model_and_processor():
    torch.manual_seed(0)
    config = mini_config(code_bits=32)
    return CMAHModel(config).eval(), CMAHProcessor.from_model_config(config)


def image_codes(model, processor, images) -> np.ndarray:
    with torch.inference_mode():
        return model.get_image_codes(processor(images=images, return_tensors="pt")["pixel_values"]).numpy()


def test_calibrated_bits_split_the_calibration_images_in_half(model_and_processor):
    model, processor = model_and_processor
    images = domain_images(40, seed=0)
    report = calibrate_image_codes(model, processor, images)

    shares = (image_codes(model, processor, images) > 0).mean(axis=0)
    np.testing.assert_allclose(shares, 0.5)  # 40 images: the median lies between the 20th and 21st
    assert report.bit_balance_after == pytest.approx(bit_balance(image_codes(model, processor, images))) == 0.0
    assert report.num_images == 40 and report.distinct_codes_after >= report.distinct_codes_before
    # Calibrating again reads the raw logits, not the calibrated ones: the same thresholds.
    thresholds = list(model.config.image_code_thresholds)
    calibrate_image_codes(model, processor, images)
    assert model.config.image_code_thresholds == pytest.approx(thresholds)
    # Held-out images of the same domain are near balance too (the thresholds generalise).
    assert bit_balance(image_codes(model, processor, domain_images(200, seed=1))) < 0.1


def test_calibration_changes_image_codes_and_embeds_together_and_no_shape_code(model_and_processor):
    model, processor = model_and_processor
    clouds = torch.from_numpy(np.random.default_rng(2).normal(size=(4, 256, 3)).astype(np.float32))
    pixel_values = processor(images=domain_images(4, seed=3), return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        shape_codes, raw_logits = model.get_shape_codes(clouds), model.get_image_logits(pixel_values)
        calibrate_image_codes(model, processor, domain_images(MIN_CALIBRATION_IMAGES, seed=0))
        thresholds = torch.tensor(model.config.image_code_thresholds)
        codes, embeds = model.get_image_codes_and_embeds(pixel_values)
        assert torch.equal(model.get_shape_codes(clouds), shape_codes)
    assert torch.equal(codes, torch.where(raw_logits >= thresholds, 1, -1).to(torch.int8))
    torch.testing.assert_close(embeds, torch.nn.functional.normalize(torch.tanh(raw_logits - thresholds), dim=-1))


def test_thresholds_survive_save_and_load_and_keep_the_index_fingerprint(model_and_processor, tmp_path):
    model, processor = model_and_processor
    before = ModelFingerprint.of(model)
    calibrate_image_codes(model, processor, domain_images(20, seed=0))
    model.save_pretrained(tmp_path)
    loaded = CMAHModel.from_pretrained(tmp_path).eval()

    assert loaded.config.image_code_thresholds == pytest.approx(model.config.image_code_thresholds)
    images = domain_images(6, seed=4)
    np.testing.assert_array_equal(image_codes(loaded, processor, images), image_codes(model, processor, images))
    # An index built by the uncalibrated model still accepts the calibrated one: its shape codes are the same.
    assert ModelFingerprint.of(loaded).config_hash == before.config_hash


def test_bad_thresholds_and_too_few_images_are_refused(model_and_processor):
    with pytest.raises(ValueError, match="32 finite numbers"):
        CMAHConfig.from_preset("cmah-tiny", code_bits=32, image_code_thresholds=[0.0] * 16)
    with pytest.raises(ValueError, match="1 not finite"):
        CMAHConfig.from_preset("cmah-tiny", code_bits=32, image_code_thresholds=[0.0] * 31 + [float("nan")])
    model, processor = model_and_processor
    with pytest.raises(InvalidInputError, match=f"at least {MIN_CALIBRATION_IMAGES} images"):
        calibrate_image_codes(model, processor, domain_images(3, seed=0))
    assert model.config.image_code_thresholds is None
