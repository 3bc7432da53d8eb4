"""api_keys.last_used_at: when a key last authenticated a request (shown by `keys list` and /admin/keys).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Add only what is missing: a build between releases may have created the column with the models.
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("api_keys")}
    if "last_used_at" not in columns:
        with op.batch_alter_table("api_keys") as batch:
            batch.add_column(sa.Column("last_used_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("last_used_at")
