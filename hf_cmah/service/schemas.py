"""The JSON shapes of the API (pydantic): what `/openapi.json` documents and the clients read."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="stable snake_case code, e.g. invalid_input, not_found, busy")
    message: str = Field(description="one sentence that names the field and the problem")
    field: str | None = Field(None, description="the form field, query parameter or path part at fault")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class LibraryInfo(BaseModel):
    name: str
    model: str = Field(description="the model folder or Hub id")
    code_bits: int
    shapes: int
    rerank: bool = Field(description="whether the index keeps embeddings, so `rerank` can be used")
    writable: bool


class ServiceInfo(BaseModel):
    version: str
    status: str
    default_model: str | None
    writes: bool
    max_upload_mb: float
    models: list[LibraryInfo]


class Query(BaseModel):
    kind: str = Field(description="image or shape")
    code: str = Field(description="the query's packed code as hex (`hf-cmah search --code` reads it)")


class SearchHit(BaseModel):
    rank: int
    shape_id: str
    label: str | None
    distance: int = Field(description="Hamming distance between the query's code and the shape's")
    score: float | None = Field(None, description="cosine similarity after re-ranking, else null")
    thumbnail_url: str | None
    mesh_url: str | None


class SearchResponse(BaseModel):
    model: str
    code_bits: int
    query: Query
    latency_ms: float = Field(description="server-side time: decoding, encoding and search")
    results: list[SearchHit]


class ShapeInfo(BaseModel):
    shape_id: str
    label: str | None
    model: str
    thumbnail_url: str | None
    mesh_url: str | None


class ShapesAdded(BaseModel):
    model: str
    added: list[str]
    count: int = Field(description="shapes in the library afterwards")


class ShapeDeleted(BaseModel):
    model: str
    deleted: str
    count: int


class Health(BaseModel):
    status: str


__all__ = [
    "ErrorResponse",
    "Health",
    "LibraryInfo",
    "Query",
    "SearchHit",
    "SearchResponse",
    "ServiceInfo",
    "ShapeDeleted",
    "ShapeInfo",
    "ShapesAdded",
]
