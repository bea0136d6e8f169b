"""CMAH retrieval metrics as an `evaluate` metric module, loaded from its folder:

    import evaluate
    metric = evaluate.load("path/to/hf_cmah/evaluation/cmah_retrieval")
    metric.compute(predictions=query_codes, references=query_labels,
                   database_codes=shape_codes, database_labels=shape_labels)

Same numbers as `hf_cmah.evaluation.metrics.retrieval_metrics` (this module only adapts it).
"""

import datasets
import evaluate
import numpy as np

from hf_cmah.evaluation.metrics import hamming_distances, retrieval_metrics

_DESCRIPTION = """
Hash-code retrieval: every query code ranks the database codes by Hamming distance (ties keep
database order). Class-level relevance (same label) gives mAP@all, mAP@k and P@k; queries with
no relevant item are left out and counted. With `query_ids` / `database_ids`, Acc@k is the share
of queries whose own item is in the top k.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: ±1 codes of the queries, one list of K ints per query.
    references: class label of each query.
    database_codes: ±1 codes of the database, [N][K].
    database_labels: class label of each database item.
    query_ids, database_ids (optional): instance ids, for Acc@k.
    map_k, precision_k, accuracy_k (optional): cut-offs (defaults (10, 100), (1, 5, 10, 20, 50, 100), (1, 10)).
Returns:
    map@all, map@k, p@k, acc@k (floats), num_queries, num_database, queries_without_relevant.
"""

_CITATION = """
@misc{hf-cmah, title={hf-cmah: image-to-3D-shape retrieval on the Hugging Face stack}, year={2026}}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class CmahRetrieval(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("int8")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(
        self,
        predictions,
        references,
        database_codes,
        database_labels,
        query_ids=None,
        database_ids=None,
        map_k=(10, 100),
        precision_k=(1, 5, 10, 20, 50, 100),
        accuracy_k=(1, 10),
    ):
        distances = hamming_distances(np.asarray(predictions), np.asarray(database_codes))
        results = retrieval_metrics(
            distances, references, database_labels, query_ids, database_ids, map_k, precision_k, accuracy_k
        )
        return {key: value for key, value in results.items() if not isinstance(value, dict)}
