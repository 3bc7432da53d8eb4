"""A random identity per catalog, so that a data folder is only ever used with its own catalog.

Why: the data folder holds what the catalog does not (vector index files
trusted by revision number, photos, the audit head). Pointed at another catalog
(``--catalog-url`` set once and not the next time), a folder's index of bank 1
at revision 7 would be taken for the other catalog's bank 1 at revision 7 and
answer queries wrongly without a sign. With an identity in the catalog and the
same value in the folder's ``catalog-id`` file, such a mix is refused instead
(:func:`indexer.store.catalog.bind_folder`).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    meta = op.create_table(
        "catalog_meta",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.bulk_insert(meta, [{"name": "catalog_id", "value": secrets.token_hex(16)}])


def downgrade() -> None:
    op.drop_table("catalog_meta")
