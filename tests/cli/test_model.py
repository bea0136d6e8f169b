"""`hf-cmah model init` + `hf-cmah encode`: codes printed for files equal the Python API's."""

from __future__ import annotations

import json

import numpy as np
import torch
import trimesh
from PIL import Image

from hf_cmah import CMAHModel, CMAHProcessor, pack_codes
from hf_cmah.cli import main
from hf_cmah.geometry import load_points


def test_init_then_encode_files(tmp_path, capsys):
    model_dir = tmp_path / "model"
    assert main(["model", "init", "--preset", "cmah-tiny", "--code-bits", "16", "--out", str(model_dir)]) == 0
    image_path = tmp_path / "query.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(image_path)
    mesh_path = tmp_path / "cone.obj"
    trimesh.creation.cone(0.5, 1.0).export(mesh_path)
    capsys.readouterr()

    assert main(["encode", str(model_dir), "--image", str(image_path), "--shape", str(mesh_path)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["kind"], line["bits"]) for line in lines] == [("image", 16), ("shape", 16)]

    model, processor = CMAHModel.from_pretrained(model_dir).eval(), CMAHProcessor.from_pretrained(model_dir)
    with torch.no_grad():
        expected = pack_codes(model.get_shape_codes(processor(points=load_points(mesh_path, 512))["points"]))[0]
    assert lines[1]["code"] == bytes(expected).hex()


def test_encode_reports_a_missing_file_without_traceback(tmp_path, capsys):
    model_dir = tmp_path / "model"
    main(["model", "init", "--out", str(model_dir)])
    assert main(["encode", str(model_dir), "--shape", str(tmp_path / "missing.off")]) == 2
    error = capsys.readouterr().err
    assert "missing.off" in error and "Traceback" not in error


def test_calibrate_a_folder_of_images_skips_a_bad_file_and_keeps_shape_codes(tmp_path, capsys):
    model_dir, out = tmp_path / "model", tmp_path / "calibrated"
    main(["model", "init", "--code-bits", "16", "--out", str(model_dir)])
    photos = tmp_path / "photos" / "studio"
    photos.mkdir(parents=True)
    pixels = np.random.default_rng(0).integers(100, 255, (20, 24, 24, 3), dtype=np.uint8)
    for number, image in enumerate(pixels):
        Image.fromarray(image).save(photos / f"photo-{number:02d}.jpg")
    (photos / "broken.png").write_bytes(b"not a png")
    capsys.readouterr()

    assert main(["model", "calibrate", str(model_dir), "--images", str(tmp_path / "photos"), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "on 20 images" in captured.out

    model, calibrated = CMAHModel.from_pretrained(model_dir).eval(), CMAHModel.from_pretrained(out).eval()
    processor = CMAHProcessor.from_pretrained(out)
    assert len(calibrated.config.image_code_thresholds) == 16
    with torch.no_grad():
        photos_as_read = [Image.open(path).convert("RGB") for path in sorted(photos.glob("*.jpg"))]
        codes = calibrated.get_image_codes(processor(images=photos_as_read)["pixel_values"])
        cloud = processor(points=np.random.default_rng(1).normal(size=(512, 3)).astype(np.float32))["points"]
        assert torch.equal(calibrated.get_shape_codes(cloud), model.get_shape_codes(cloud))
    assert ((codes > 0).float().mean(dim=0) == 0.5).all()


def test_calibrate_refuses_a_full_output_folder_and_too_few_images(tmp_path, capsys):
    model_dir = tmp_path / "model"
    main(["model", "init", "--out", str(model_dir)])
    image_path = tmp_path / "one.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image_path)
    capsys.readouterr()
    assert main(["model", "calibrate", str(model_dir), "--images", str(image_path), "--out", str(model_dir)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert main(["model", "calibrate", str(model_dir), "--images", str(image_path), "--out", str(tmp_path / "c")]) == 2
    assert "at least 16 images" in capsys.readouterr().err and not (tmp_path / "c").exists()


def test_calibrate_from_a_built_dataset_split_and_kind(tmp_path, capsys):
    import datasets

    from hf_cmah.data.features import empty_view, shape_features
    from tests.conftest import mini_config, synthetic_pairs

    config = mini_config(code_bits=16)
    torch.manual_seed(0)
    CMAHModel(config).save_pretrained(tmp_path / "model")
    CMAHProcessor.from_model_config(config).save_pretrained(tmp_path / "model")
    pixels, clouds = synthetic_pairs(20, config.num_points, config.image_size, seed=0)
    images = [Image.fromarray((image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)) for image in pixels]
    rows = [
        {
            "shape_id": f"s{row:02d}",
            "label": 0,
            "points": clouds[row].numpy(),
            "image": images[row],
            "view": {**empty_view("render"), "index": 0},
            "source": "synthetic",
            "mesh_path": "",
        }
        for row in range(20)
    ]
    (tmp_path / "built" / "data").mkdir(parents=True)
    dataset = datasets.Dataset.from_list(rows, features=shape_features(["thing"], config.num_points))
    dataset.to_parquet(tmp_path / "built" / "data" / "train-00000-of-00001.parquet")
    arguments = ["model", "calibrate", str(tmp_path / "model"), "--data", str(tmp_path / "built"), "--kind", "render"]
    capsys.readouterr()

    assert main([*arguments, "--split", "test", "--out", str(tmp_path / "wrong")]) == 2
    assert "has splits ['train'], not 'test'" in capsys.readouterr().err
    assert main([*arguments, "--out", str(tmp_path / "calibrated")]) == 0
    assert "on 20 images" in capsys.readouterr().out
    calibrated = CMAHModel.from_pretrained(tmp_path / "calibrated").eval()
    with torch.no_grad():
        codes = calibrated.get_image_codes(CMAHProcessor.from_model_config(config)(images=images)["pixel_values"])
    assert ((codes > 0).float().mean(dim=0) == 0.5).all()
