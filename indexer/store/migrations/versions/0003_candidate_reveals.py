"""candidate_reveals: which reviewer saw a candidate's reference photo (the evidence branch's reveal rule).

Made with ``alembic revision --autogenerate`` against a catalog at 0002.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A folder adopted at the baseline may already hold the table (a build between releases
    # created it with the models); like the baseline, add only what is missing.
    if sa.inspect(op.get_bind()).has_table("candidate_reveals"):
        return
    op.create_table(
        "candidate_reveals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("candidate_id", sa.Integer(), nullable=False),
        sa.Column("reviewer", sa.String(length=120), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["candidate_id"], ["candidates.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("candidate_id", "reviewer"),
    )
    op.create_index("ix_candidate_reveals_candidate_id", "candidate_reveals", ["candidate_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_candidate_reveals_candidate_id", table_name="candidate_reveals")
    op.drop_table("candidate_reveals")
