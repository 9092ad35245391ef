"""The JSON API under /api/: health, search by upload or by stored work, items, thumbnails,
near-duplicate groups, clusters and the audit. Items are addressed by id only, never by a path."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated

import numpy as np
from fastapi import APIRouter, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse

from artenc import __version__
from artenc.defaults import duplicate_threshold
from artenc.images import ImageLoadError, NotAnImageError
from artenc.serve import schemas
from artenc.serve.collection import Status
from artenc.serve.deps import ItemId, NeighboursK, State
from artenc.serve.state import ServeState
from artenc.serve.thumbnails import ThumbnailError

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["api"])

Offset = Annotated[int, Query(ge=0)]
Limit = Annotated[int, Query(ge=1, le=500)]
Radius = Annotated[float | None, Query(
    ge=-1.0, le=1.0, description="list every work with cosine similarity >= radius (exact search), at most k of "
                                 "them, the most similar first; `within` counts them all")]


def item_view(state: ServeState, request: Request, i: int, **extra: float) -> dict:
    """The public description of work `i` (no filesystem path beyond its relative path)."""
    i = int(i)
    w, h = state.sizes[i]
    return {"id": i, "path": state.relpaths[i], "width": int(w), "height": int(h),
            "labels": state.labels[i], "thumbnail_url": str(request.app.url_path_for("thumbnail", item_id=i)),
            **extra}


def _result(state: ServeState, request: Request, sims: np.ndarray, ids: np.ndarray, t0: float,
            radius: float | None = None, within: int | None = None, vector: np.ndarray | None = None) -> dict:
    keep = ids >= 0
    ids, sims = ids[keep], sims[keep]
    neighbors = [item_view(state, request, i, similarity=round(float(s), 6)) for i, s in zip(ids, sims, strict=True)]
    doc = {"neighbors": neighbors, "predicted": state.predict(ids, sims, vector),
           "seconds": round(time.perf_counter() - t0, 4)}
    if radius is not None:
        doc.update(radius=radius, within=int(within))
    return doc


@router.get("/health", response_model=schemas.Health, summary="Server and store status")
def health(state: State) -> dict:
    return {"status": "ok", "items": state.count, "model": state.encoder.signature.model,
            "dim": state.encoder.signature.dim, "index": state.index.kind, "label_columns": state.label_columns,
            "max_upload_bytes": state.settings.max_upload_bytes, "version": __version__}


@router.post(
    "/search", response_model=schemas.SearchResult, response_model_exclude_unset=True,
    summary="Nearest works to an uploaded image (or every work within a radius)",
    responses={413: {"description": "upload over the size limit"},
               415: {"description": "not an image (no image format's signature)"},
               422: {"description": "empty, truncated or corrupt image, dimensions over the limits "
                                    "(decompression bomb), or bad parameters"}},
)
async def search(
    state: State, request: Request,
    file: Annotated[UploadFile, File(description="the image (JPEG, PNG, WebP, TIFF, BMP, GIF)")],
    k: NeighboursK,
    radius: Radius = None,
) -> dict:
    t0 = time.perf_counter()
    data = await file.read()
    name, within = file.filename or "upload", None
    try:
        vector = await asyncio.wrap_future(state.engine.encode(data, name))
    except ImageLoadError as exc:  # the input's fault: 415 not an image, 422 a damaged or oversized one
        status = 415 if isinstance(exc, NotAnImageError) else 422
        raise HTTPException(status, f"cannot use this file as a query: {exc}") from None
    if radius is None:
        sims, ids = await asyncio.wrap_future(state.engine.vector(vector, k))
    else:
        sims, ids, within = await asyncio.wrap_future(state.engine.vector_within(vector, radius, k))
    return _result(state, request, sims, ids, t0, radius, within, vector)


@router.get("/items/{item_id}", response_model=schemas.Item, summary="One work of the store")
def item(state: State, request: Request, item_id: ItemId) -> dict:
    return item_view(state, request, item_id)


@router.get("/items/{item_id}/similar", response_model=schemas.SearchResult, response_model_exclude_unset=True,
            summary="Nearest works to a stored work, or every work within a radius (itself excluded)")
async def similar_to_item(state: State, request: Request, item_id: ItemId, k: NeighboursK,
                          radius: Radius = None) -> dict:
    t0 = time.perf_counter()
    vector = state.index.vectors_at(np.array([item_id]))[0]  # this row only (not every vector of the store)
    if radius is not None:
        sims, ids, within = await asyncio.wrap_future(state.engine.vector_within(vector, radius, k, exclude=item_id))
        return _result(state, request, sims, ids, t0, radius, within, vector)
    sims, ids = await asyncio.wrap_future(state.engine.vector(vector, k + 1))
    others = ids != item_id
    return _result(state, request, sims[others][:k], ids[others][:k], t0, vector=vector)


@router.get("/thumbnail/{item_id}", response_class=FileResponse, summary="JPEG thumbnail of a work",
            responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "unknown id or unreadable file"}})
def thumbnail(state: State, item_id: ItemId) -> FileResponse:
    try:
        path = state.thumbnails.get(state.paths[item_id], state.sha256[item_id])
    except ThumbnailError as exc:
        log.warning("thumbnail of item %d: %s", item_id, exc)
        raise HTTPException(404, f"item {item_id}: its image file cannot be read any more") from None
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


def _pending(status: Status) -> dict:
    return {"state": status.state, "message": status.message}


@router.get("/duplicates", response_model=schemas.DuplicateGroups, summary="Near-duplicate groups")
def duplicates(state: State, request: Request, offset: Offset = 0, limit: Limit = 50) -> dict:
    status = state.duplicates.poll()
    verify = state.settings.verify_duplicates
    doc = {**_pending(status), "threshold": state.settings.duplicate_threshold or duplicate_threshold(verify),
           "verified": verify, "total": 0, "groups": []}
    if status.value is not None:
        groups = status.value.groups
        doc["total"] = len(groups)
        doc["groups"] = [
            {"keep": item_view(state, request, g.keep),
             "duplicates": [item_view(state, request, d.row, similarity=d.similarity) for d in g.duplicates]}
            for g in groups[offset : offset + limit]
        ]
    return doc


@router.get("/clusters", response_model=schemas.Clusters, summary="k-medoids clusters, largest first")
def clusters(state: State, request: Request, members: Annotated[int, Query(ge=0, le=100)] = 6) -> dict:
    status = state.clusters.poll()
    doc = {**_pending(status), "k": None, "rule": "", "clusters": []}
    if status.value is not None:
        doc.update(k=status.value.k, rule=status.value.rule, clusters=[
            {"id": c, "size": len(cl), "medoid": item_view(state, request, int(cl[0])),
             "members": [item_view(state, request, int(i)) for i in cl[:members]]}
            for c, cl in enumerate(_largest_first(status.value))])
    return doc


@router.get("/clusters/{cluster_id}", response_model=schemas.Cluster, summary="One cluster's members, a page")
def cluster(state: State, request: Request, cluster_id: int, offset: Offset = 0, limit: Limit = 60) -> dict:
    status = state.clusters.poll()
    if status.value is None:
        raise HTTPException(409 if status.state == "computing" else 503, status.message)
    ordered = _largest_first(status.value)
    if not 0 <= cluster_id < len(ordered):
        raise HTTPException(404, f"no cluster {cluster_id} (there are {len(ordered)})")
    cl = ordered[cluster_id]
    return {"id": cluster_id, "size": len(cl), "medoid": item_view(state, request, int(cl[0])),
            "members": [item_view(state, request, int(i)) for i in cl[offset : offset + limit]]}


def _largest_first(report) -> list:
    """Each cluster's member rows (medoid first, nearest first), largest cluster first."""
    members = [report.members(c) for c in range(report.k)]
    return sorted(members, key=lambda m: -len(m))


@router.get("/audit", response_model=schemas.Audit,
            summary="Label issues (worst first, with the suggested label) and outliers (most isolated first)")
def audit(state: State, request: Request, limit: Limit = 50,
          neighbors: Annotated[int, Query(ge=0, le=20)] = 5) -> dict:
    status = state.audit.poll()
    doc = {**_pending(status), "k": None, "fields": {}, "outliers": [], "duplicate_pairs": 0, "notes": []}
    report = status.value
    if report is None:
        return doc
    fields = {}
    for name, summary in report.to_dict()["label_issues"].items():
        worst = [{"item": item_view(state, request, i.row), "rank": i.rank, "given": i.given,
                  "suggested": i.suggested, "label_quality": i.quality, "is_issue": i.is_issue,
                  "neighbors": [item_view(state, request, n.row, similarity=n.similarity) for n in i.neighbors]}
                 for i in report.issues(name, limit, neighbors=neighbors)]
        fields[name] = {**{key: summary[key] for key in ("checked", "issues", "out_of_sample_accuracy", "notes")},
                        "worst": worst}
    outliers = [{"item": item_view(state, request, o.row), "rank": o.rank, "score": o.score, "z": o.z,
                 "duplicates": o.duplicates} for o in report.outlier_list(limit, neighbors=0)]
    doc.update(k=report.k, fields=fields, outliers=outliers, duplicate_pairs=report.duplicates.duplicate_pairs,
               notes=report.notes)
    return doc
