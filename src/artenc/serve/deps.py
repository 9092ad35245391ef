"""Dependencies injected into endpoints with `Depends`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request

from artenc.serve.state import ServeState


def get_state(request: Request) -> ServeState:
    """The state loaded once by `create_app`."""
    return request.app.state.artenc


State = Annotated[ServeState, Depends(get_state)]


def item_id(state: State, item_id: Annotated[int, Path(ge=0, description="item id (row in the store)")]) -> int:
    """A path parameter that must name a work of the store (404 otherwise)."""
    if not state.has_item(item_id):
        raise HTTPException(404, f"no item {item_id} (the store holds ids 0 to {state.count - 1})")
    return item_id


ItemId = Annotated[int, Depends(item_id)]


def neighbours_k(state: State, k: Annotated[int, Query(ge=1, description="number of neighbours")] = 10) -> int:
    """The `k` query parameter, at most the server's `max_k` setting (422 otherwise)."""
    if k > state.settings.max_k:
        raise HTTPException(422, f"k must be at most {state.settings.max_k}, got {k}")
    return k


NeighboursK = Annotated[int, Depends(neighbours_k)]
