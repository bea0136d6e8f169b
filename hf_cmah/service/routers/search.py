"""``POST /api/v1/search``: an image or a shape in, the nearest shapes of a library out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from ...errors import InvalidInputError
from ..dependencies import Pool, Registry, Settings
from ..libraries import Library
from ..retrieval import MAX_K, SearchOutcome, search_library
from ..schemas import ErrorResponse, Query, SearchHit, SearchResponse
from ..uploads import Upload, read_image, read_shape
from .shapes import shape_urls

router = APIRouter(prefix="/api/v1", tags=["search"])
ERRORS = {status: {"model": ErrorResponse} for status in (400, 404, 413, 422, 503)}


@router.post("/search", response_model=SearchResponse, responses=ERRORS)
async def search(
    registry: Registry,
    pool: Pool,
    settings: Settings,
    image: Annotated[UploadFile | None, File(description="image → shape: a PNG, JPEG, WebP, … file")] = None,
    shape: Annotated[UploadFile | None, File(description="shape → shape: a mesh or point file")] = None,
    k: Annotated[int, Form(ge=1, le=MAX_K, description="how many shapes to return")] = 10,
    model: Annotated[str | None, Form(description="library name (default: the first)")] = None,
    rerank: Annotated[int, Form(ge=0, le=10_000, description="re-rank this many Hamming candidates by cosine")] = 0,
) -> SearchResponse:
    """The ``k`` shapes nearest the query by Hamming distance (then cosine with ``rerank``), best first."""
    if (image is None) == (shape is None):
        raise InvalidInputError("image: send exactly one file, as `image` (image → shape) or `shape` (shape → shape)")
    library = registry.get(model)
    field, file = ("image", image) if image is not None else ("shape", shape)
    upload = Upload(field, file.filename or "", await file.read())
    outcome = await pool.run(_search_upload, library, upload, k, rerank, settings.max_image_pixels)
    return search_response(outcome)


def _search_upload(library: Library, upload: Upload, k: int, rerank: int, max_pixels: int) -> SearchOutcome:
    """Decode and search in a worker thread: decoding a large image is CPU work too."""
    if upload.field == "image":
        return search_library(library, "image", read_image(upload, max_pixels), k, rerank)
    processor = library.index.encoder.processor
    return search_library(library, "shape", read_shape(upload, processor.num_points, processor.seed), k, rerank)


def search_response(outcome: SearchOutcome) -> SearchResponse:
    return SearchResponse(
        model=outcome.library,
        code_bits=outcome.code_bits,
        query=Query(kind=outcome.kind, code=outcome.code),
        latency_ms=outcome.latency_ms,
        results=[
            SearchHit(
                rank=hit.rank,
                shape_id=hit.shape_id,
                label=hit.label,
                distance=hit.distance,
                score=hit.score,
                **shape_urls(outcome.library, hit.shape_id, hit.thumbnail, hit.mesh),
            )
            for hit in outcome.hits
        ],
    )
