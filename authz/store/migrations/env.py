"""Alembic environment: runs against the connection authz.store.migrate hands it."""

from __future__ import annotations

from alembic import context

from authz.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `authz migrate` (authz.store.migrate)")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
