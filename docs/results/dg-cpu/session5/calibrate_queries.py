"""Do per-domain bit thresholds undo the thumbnails' collapse? (issue 20, fifth CPU session)

The fourth session found the thumbnails collapsed: 857 test thumbnails got 254 distinct codes
and 14 distinct first shapes. ``sign`` thresholds every bit at 0, which suits the training
renders; a domain whose hash logits sit off 0 loses those bits. This script re-thresholds the
image logits per bit from an unlabeled bank of the query domain and scores image → shape on the
test split, beside ``sign`` and random codes, for each model:

- ``sign``: the model's codes as shipped.
- ``bank median``: each bit's threshold is the median of the bank's logits, so every bit splits
  the domain in half. The bank is the train split's images of the query kind (PSB train
  thumbnails). Pix3D has one split, so there each mask's threshold comes from the masks of the
  other half of the shapes (cross-fitted): no query sets its own threshold.
- ``bank median, shapes too``: the shape codes likewise, at the database's own medians (an
  index has its whole database at build time).
- ``mean shift`` (PSB only): the bank's mean moved onto the training renders' mean, then ``sign``.
- ``bank median + CSLS``: the bank-median codes, ranked by CSLS (`csls_distances`): shapes near
  many bank images (hubs) move down.
- ``transductive``: the test queries' own median (unlabeled), a reference only.

Usage: python calibrate_queries.py QUERY_DATA KIND SOURCE_DATA MODEL [MODEL ...]
e.g.   python calibrate_queries.py outputs/dg/psb-plain thumbnail outputs/dg/psb-random outputs/dg/runs/r300-s0/final
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch
from transformers import AutoModel, AutoProcessor

from hf_cmah.data.storage import load_built_dataset
from hf_cmah.evaluation.metrics import hamming_distances, rank_database, retrieval_metrics
from hf_cmah.evaluation.retrieval import EncodedSet, encode_images, encode_shapes, image_rows, random_codes
from hf_cmah.modeling.hash_codes import codes_from_logits


class LogitsAsEmbeds:
    """A CMAH model whose "embeds" are its hash logits, so the evaluation encoders return them."""

    def __init__(self, model):
        self.model, self.config, self.device = model, model.config, model.device

    def eval(self):
        return self

    def get_image_codes_and_embeds(self, pixel_values: torch.Tensor):
        logits = self.model.get_image_logits(pixel_values)
        return codes_from_logits(logits), logits

    def get_shape_codes_and_embeds(self, points: torch.Tensor):
        logits = self.model.get_shape_logits(points)
        return codes_from_logits(logits), logits


def thresholded(encoded: EncodedSet, thresholds: np.ndarray) -> EncodedSet:
    """The same rows with codes ``sign(logits - thresholds)`` (ties to +1, as `codes_from_logits`)."""
    codes = np.where(encoded.embeds >= thresholds, 1, -1).astype(np.int8)
    return EncodedSet(codes, encoded.embeds, encoded.labels, encoded.shape_ids)


def scores(images: EncodedSet, shapes: EncodedSet, distances: np.ndarray | None = None) -> dict:
    """Image → shape mAP, tie-aware mAP, Acc@k and the fourth session's hub counts (Hamming by default)."""
    if distances is None:
        distances = hamming_distances(images.codes, shapes.codes)
    metrics = retrieval_metrics(distances, images.labels, shapes.labels, images.shape_ids, shapes.shape_ids)
    top10 = rank_database(distances)[:, :10]
    return {
        "map@all": metrics["map@all"],
        "map@all_tie_aware": metrics["map@all_tie_aware"],
        "acc@1": metrics["acc@1"],
        "acc@10": metrics["acc@10"],
        "distinct_codes": len(np.unique(images.codes, axis=0)),
        "distinct_top1": len(np.unique(top10[:, 0])),
        "most_top10_lists": int(np.bincount(top10.ravel()).max()),
    }


def banks(queries: EncodedSet, train_bank: np.ndarray | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(query rows, bank logits)`` pairs that cover every query once.

    With a train split, one pair: all queries, the train images. Without one (Pix3D), two: each
    half of the shapes (by sorted id) gets the other half's queries as its bank (cross-fitted).
    """
    if train_bank is not None:
        return [(np.ones(len(queries.labels), dtype=bool), train_bank)]
    first_half = np.isin(queries.shape_ids, np.unique(queries.shape_ids)[::2])
    return [(first_half, queries.embeds[~first_half]), (~first_half, queries.embeds[first_half])]


def bank_median_codes(queries: EncodedSet, folds) -> EncodedSet:
    """Each query thresholded at its bank's per-bit median."""
    thresholds = np.empty_like(queries.embeds)
    for rows, bank in folds:
        thresholds[rows] = np.median(bank, axis=0)
    return thresholded(queries, thresholds)


def csls_distances(queries: EncodedSet, shapes: EncodedSet, folds, neighbours: int = 10) -> np.ndarray:
    """CSLS (Conneau et al., ICLR 2018) in Hamming space: ``2 d(q, x) - h(x)``, where ``h(x)`` is the
    mean distance from shape ``x`` to its ``neighbours`` nearest bank images, coded as the queries
    are. A hub sits close to much of the bank, so its small ``h`` ranks it lower for every query."""
    distances = 2.0 * hamming_distances(queries.codes, shapes.codes)
    for rows, bank in folds:
        bank_codes = np.where(bank >= np.median(bank, axis=0), 1, -1).astype(np.int8)
        to_bank = np.sort(hamming_distances(bank_codes, shapes.codes), axis=0)[:neighbours]
        distances[rows] -= to_bank.mean(axis=0)
    return distances


def calibration_rows(name: str, built, kind: str, source_train) -> dict:
    """Every row of the module docstring for one model."""
    model = LogitsAsEmbeds(AutoModel.from_pretrained(name).eval())
    processor = AutoProcessor.from_pretrained(name)

    def encode(split, image_kind: str) -> EncodedSet:
        rows, column = image_rows(split, image_kind)
        return encode_images(model, processor, rows, image_column=column, progress=False)

    queries, source = encode(built["test"], kind), encode(source_train, "render")
    shapes = encode_shapes(model, processor, built["test"], progress=False)
    train_bank = encode(built["train"], kind).embeds if "train" in built else None
    folds = banks(queries, train_bank)
    calibrated, bits = bank_median_codes(queries, folds), queries.codes.shape[1]
    rows = {
        "sign": scores(queries, shapes),
        "bank median": scores(calibrated, shapes),
        "bank median, shapes too": scores(calibrated, thresholded(shapes, np.median(shapes.embeds, axis=0))),
        "bank median + CSLS": scores(calibrated, shapes, csls_distances(calibrated, shapes, folds)),
        "transductive": scores(thresholded(queries, np.median(queries.embeds, axis=0)), shapes),
        "random codes": scores(random_codes(queries, bits, 0), random_codes(shapes, bits, 1)),
    }
    if train_bank is not None:
        rows["mean shift"] = scores(thresholded(queries, train_bank.mean(axis=0) - source.embeds.mean(axis=0)), shapes)
    return rows


def main(query_data: str, kind: str, source_data: str, models: list[str]) -> None:
    torch.set_num_threads(2)
    built, source_train = load_built_dataset(query_data), load_built_dataset(source_data)["train"]
    report = {}
    for name in models:
        report[name] = calibration_rows(name, built, kind, source_train)
        for row, values in report[name].items():
            print(
                f"{name} | {row}: mAP {values['map@all']:.4f} tie-aware {values['map@all_tie_aware']:.4f} "
                f"Acc@1 {values['acc@1']:.3f} Acc@10 {values['acc@10']:.3f} | distinct codes {values['distinct_codes']}, "
                f"distinct top-1 {values['distinct_top1']}, most top-10 lists {values['most_top10_lists']}",
                flush=True,
            )
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])
