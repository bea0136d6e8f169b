"""Shape library index and search: packed codes on disk, exact Hamming search, approximate and Milvus backends.

The one way in is :class:`ShapeIndex` (``from_codes``, ``add``, ``remove``, ``search``,
``range_search``, ``save``, ``load``, ``push_to_hub``, ``from_pretrained``) and :func:`build_index`
(mesh folder or built dataset + model → saved index).
Backends load their libraries (faiss, pymilvus) only when chosen.
"""

from .encoding import ShapeEncoder, ShapeRecord, build_index, list_mesh_folder, load_retriever
from .shape_index import SearchResult, ShapeIndex
from .storage import ModelFingerprint

__all__ = [
    "ModelFingerprint",
    "SearchResult",
    "ShapeEncoder",
    "ShapeIndex",
    "ShapeRecord",
    "build_index",
    "list_mesh_folder",
    "load_retriever",
]
