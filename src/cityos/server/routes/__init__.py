"""One router per resource; :func:`cityos.server.create_app` mounts them all."""
