"""The ``reunite`` command.

Every verb takes the data folder from ``--data DIR`` (before the verb; default
``./reunite-data``, or ``$REUNITE_DATA``) and the catalog from ``--catalog-url
URL`` (or ``$REUNITE_CATALOG_URL``; default the SQLite file in the data folder,
e.g. ``postgresql+psycopg://user@host/db`` for PostgreSQL). Bad input exits with code 2 and one
line on stderr that names the problem; nothing already stored is touched.
"""

from api.cli.main import app, main

__all__ = ["app", "main"]
