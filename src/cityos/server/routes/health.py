"""Liveness: answers without authentication and touches nothing."""

from __future__ import annotations

from fastapi import APIRouter

import cityos

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> dict[str, str]:
    """``{"status": "ok", "version": ...}`` while the server runs."""
    return {"status": "ok", "version": cityos.__version__}
