"""Alembic's entry point for the catalog: it always runs on a connection handed over in-process.

:func:`indexer.store.schema.migrate` opens the connection (under the schema
lock) and passes it in ``config.attributes["connection"]``; there is no
alembic.ini and no URL here, so the same code upgrades SQLite and PostgreSQL.
``target_metadata`` is every model of the catalog (``declared_metadata``),
for ``alembic revision --autogenerate`` when a developer adds a table or a
column (see README).
"""

from __future__ import annotations

from alembic import context

from indexer.store.schema import declared_metadata


def run() -> None:
    connection = context.config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=declared_metadata() if context.config.attributes.get("autogenerate") else None,
        # SQLite cannot ALTER most things in place: Alembic's batch mode copies the table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
