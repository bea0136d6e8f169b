"""`make quickstart`: the whole path from meshes to a search, with the same commands a user types.

1. ``library``: build the procedural shape library (10 categories; points + Blender renders → Parquet),
2. ``train``: train `cmah-tiny` on its train split (accelerate, a few minutes on a 2-core CPU),
3. ``eval``: score image→shape / shape→image retrieval on its test split beside random codes (results.json, plots),
4. ``index``: write the test meshes to a folder and index it with meshes and thumbnails (`hf-cmah index build --assets`),
5. search the index with three images the model never trained on: a held-out render, a render under other
   lighting on another background, and a Princeton Shape Benchmark thumbnail (when ``../shared/data`` has it),
6. write ``report.md``: the metrics table, the Precision@Top-K plot, the t-SNE of codes, and a grid of each
   query with its top 5 thumbnails (label, Hamming distance).

Outputs go to ``outputs/quickstart/`` (or ``--out``). A second run reuses every finished step (library,
trained model, evaluation, index) and says so; a training run cut short resumes from its last checkpoint.
A step that fails stops the run with its name and its error.
"""

from .outputs import DEFAULT_OUT, quickstart_outputs
from .pipeline import main
from .steps import QuickstartError

__all__ = ["DEFAULT_OUT", "QuickstartError", "main", "quickstart_outputs"]
