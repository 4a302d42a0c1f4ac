"""The HTTP API: a FastAPI app assembled from one router per layer (:func:`create_app`)
and :func:`serve` to run it. Importing this package imports FastAPI; ``cityos`` does not."""

from cityos.server.app import DEFAULT_MAX_BODY, create_app, serve

__all__ = ["DEFAULT_MAX_BODY", "create_app", "serve"]
