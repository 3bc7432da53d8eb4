"""Alembic schema migrations of the catalog (run by :mod:`indexer.store.schema`, not by an ini file)."""
