"""Alembic environment: runs on the connection handed over by :meth:`cityos.db.Database.migrate`."""

from alembic import context

from cityos.db import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
