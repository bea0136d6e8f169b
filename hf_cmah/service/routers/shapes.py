"""A library's shapes: metadata, thumbnail and mesh files (cached by ETag), and the token-guarded writes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, Response

from ..dependencies import Pool, Registry, require_writer
from ..errors import ForbiddenError
from ..libraries import Library
from ..schemas import ErrorResponse, ShapeDeleted, ShapeInfo, ShapesAdded
from ..uploads import Upload, checked_shape_id

router = APIRouter(prefix="/api/v1/shapes", tags=["shapes"])
ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 409, 413, 422, 503)}
MEDIA_TYPES = {"thumbnail": "image/png", "mesh": "model/gltf-binary"}
ModelName = Annotated[str | None, Query(description="library name (default: the first)")]


def shape_urls(library: str, shape_id: str, thumbnail: str | None, mesh: str | None) -> dict:
    """The relative URLs of a shape's thumbnail and mesh (None where it has none)."""
    base = f"/api/v1/shapes/{quote(shape_id, safe='/')}"
    suffix = f"?model={quote(library)}"
    return {
        "thumbnail_url": f"{base}/thumbnail{suffix}" if thumbnail else None,
        "mesh_url": f"{base}/mesh{suffix}" if mesh else None,
    }


def _asset_response(request: Request, library: Library, shape_id: str, kind: str) -> Response:
    path = library.asset(shape_id, kind)
    etag = f'"{path.stem}"'  # assets are named by their sha256
    headers = {"ETag": etag, "Cache-Control": "public, max-age=3600"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    filename = f"{Path(shape_id).name or 'shape'}{path.suffix}"
    return FileResponse(
        path, media_type=MEDIA_TYPES[kind], headers=headers, filename=filename, content_disposition_type="inline"
    )


@router.get("/{shape_id:path}/thumbnail", responses={**ERRORS, 200: {"content": {"image/png": {}}}})
async def thumbnail(shape_id: str, request: Request, registry: Registry, model: ModelName = None) -> Response:
    """The shape's thumbnail (PNG)."""
    return _asset_response(request, registry.get(model), shape_id, "thumbnail")


@router.get("/{shape_id:path}/mesh", responses={**ERRORS, 200: {"content": {"model/gltf-binary": {}}}})
async def mesh(shape_id: str, request: Request, registry: Registry, model: ModelName = None) -> Response:
    """The shape's mesh (GLB; a point cloud where the library kept no mesh)."""
    return _asset_response(request, registry.get(model), shape_id, "mesh")


@router.get("/{shape_id:path}", response_model=ShapeInfo, responses=ERRORS)
async def shape(shape_id: str, registry: Registry, model: ModelName = None) -> ShapeInfo:
    """A shape's label and the URLs of its thumbnail and mesh."""
    library = registry.get(model)
    meta = library.shape(shape_id)
    return ShapeInfo(
        shape_id=shape_id,
        label=meta["label"],
        model=library.name,
        **shape_urls(library.name, shape_id, meta["thumbnail"], meta["mesh"]),
    )


@router.post("", status_code=201, response_model=ShapesAdded, responses=ERRORS, dependencies=[Depends(require_writer)])
async def add_shapes(
    registry: Registry,
    pool: Pool,
    files: Annotated[list[UploadFile], File(description="mesh or point files (GLB, OBJ, PLY, STL, OFF, NPY, …)")],
    shape_ids: Annotated[list[str] | None, Form(description="one id per file (default: the file name's stem)")] = None,
    labels: Annotated[list[str] | None, Form(description="one label per file (optional)")] = None,
    model: Annotated[str | None, Form(description="library name (default: the first)")] = None,
) -> ShapesAdded:
    """Encode the uploaded meshes with the library's model and add them; saved atomically before it answers."""
    library = _writable(registry.get(model))
    uploads = await _uploads(files, shape_ids or [], labels or [])
    added = await pool.run(library.add_shapes, uploads)
    return ShapesAdded(model=library.name, added=added, count=len(library.index))


@router.delete(
    "/{shape_id:path}", response_model=ShapeDeleted, responses=ERRORS, dependencies=[Depends(require_writer)]
)
async def delete_shape(
    shape_id: str,
    registry: Registry,
    pool: Pool,
    model: ModelName = None,
) -> ShapeDeleted:
    """Remove a shape from the library (saved atomically)."""
    library = _writable(registry.get(model))
    await pool.run(library.remove_shape, shape_id)
    return ShapeDeleted(model=library.name, deleted=shape_id, count=len(library.index))


def _writable(library: Library) -> Library:
    if not library.writable:
        raise ForbiddenError(f"model: library {library.name!r} is a Hub snapshot, not a local folder: read-only")
    return library


async def _uploads(files: list[UploadFile], shape_ids: list[str], labels: list[str]) -> list[Upload]:
    from ..errors import InvalidInputError

    for name, values in (("shape_ids", shape_ids), ("labels", labels)):
        if values and len(values) != len(files):
            raise InvalidInputError(f"{name}: {len(values)} given for {len(files)} files; give one per file or none")
    uploads = []
    for number, file in enumerate(files):
        filename = Path(file.filename or f"file{number}").name
        shape_id = checked_shape_id(shape_ids[number] if shape_ids else Path(filename).stem, "shape_ids")
        label = (labels[number].strip() or None) if labels else None
        uploads.append(Upload(f"files[{number}]", filename, await file.read(), shape_id, label))
    return uploads
