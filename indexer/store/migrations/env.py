"""Alembic's entry point for the catalog: it always runs on a connection handed over in-process.

:func:`indexer.store.schema.migrate` opens the connection (under the schema
lock) and passes it in ``config.attributes["connection"]``; there is no
alembic.ini and no URL here, so the same code upgrades SQLite and PostgreSQL.
``target_metadata`` is every model of the catalog, for ``alembic revision
--autogenerate`` when a developer adds a table or a column (see README).
"""

from __future__ import annotations

import importlib

from alembic import context

# Every module that declares tables on indexer.store.catalog.Base.
MODEL_MODULES = (
    "indexer.store.catalog", "indexer.store.annotations", "indexer.scene.storage",
    "api.api_keys", "api.audit", "api.web.sessions",
    "matcher.review", "matcher.cases", "matcher.outbox", "matcher.watch",
    "matcher.link_store", "matcher.privacy_ledger",
)


def target_metadata():  # noqa: ANN201 - sqlalchemy.MetaData
    """The catalog's declared schema, with every table-declaring module imported."""
    for name in MODEL_MODULES:
        importlib.import_module(name)
    from indexer.store.catalog import Base
    return Base.metadata


def run() -> None:
    connection = context.config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata() if context.config.attributes.get("autogenerate") else None,
        # SQLite cannot ALTER most things in place: Alembic's batch mode copies the table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
