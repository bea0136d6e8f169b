"""Shape library index and search: packed codes on disk, exact Hamming search, approximate and Milvus backends.

The one way in is :class:`ShapeIndex` (``from_codes``, ``add``, ``remove``, ``search``,
``range_search``, ``save``, ``load``, ``push_to_hub``, ``from_pretrained``) and :func:`build_index`
(mesh folder, built dataset or list of :class:`hf_cmah.data.records.ShapeRecord` + model → saved index).
Backends load their libraries (faiss, pymilvus) only when chosen.
"""

from .build import build_index
from .encoding import ShapeEncoder, load_retriever
from .library import ShapeLibrary, list_mesh_folder
from .library import file_record as ShapeRecord  # deprecated alias: hf_cmah.data.records.ShapeRecord is the one
from .shape_index import SearchResult, ShapeIndex
from .storage import ModelFingerprint

__all__ = [
    "ModelFingerprint",
    "SearchResult",
    "ShapeEncoder",
    "ShapeIndex",
    "ShapeLibrary",
    "ShapeRecord",
    "build_index",
    "list_mesh_folder",
    "load_retriever",
]
