"""Baseline: the catalog exactly as release 0.1.0 made it (28 tables), frozen here.

Why frozen: the models in the code will change, and this revision must keep
meaning "the schema of 0.1.0" for ever, so the tables are written out below
rather than taken from ``Base.metadata``.

Two kinds of catalog arrive here. A new one gets every table. One written by
0.1.0 or earlier, before the catalog had migrations, already holds some tables
(0.1.0 made each module's tables when the module first ran, and
``add_missing_columns`` added later columns on open): this revision adopts it
in place, creating the tables and indexes it lacks and adding the columns an
older table lacks, with the same rule 0.1.0 applied (only columns that old rows
can take: nullable, or with a server default; anything else is refused rather
than guessed). No row is rewritten. Later revisions are ordinary Alembic
operations.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

META = sa.MetaData()

sa.Table(
    'api_keys', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key_hash'),
    sa.UniqueConstraint('name'),
)

sa.Table(
    'audit_events', META,
    sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('at', sa.String(length=32), nullable=False),
    sa.Column('actor', sa.String(length=120), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('object', sa.String(length=200), nullable=False),
    sa.Column('result', sa.String(length=32), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('seq'),
    sa.Index('ix_audit_events_action', 'action', unique=False),
)

sa.Table(
    'banks', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('policy', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name'),
)

sa.Table(
    'cases', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ref', sa.String(length=20), nullable=False),
    sa.Column('title', sa.String(length=120), nullable=False),
    sa.Column('owner', sa.String(length=125), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('ref'),
    sa.UniqueConstraint('title'),
    sa.Index('ix_cases_owner', 'owner', unique=False),
)

sa.Table(
    'index_revisions', META,
    sa.Column('bank_id', sa.Integer(), nullable=False),
    sa.Column('signal', sa.String(length=64), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('bank_id', 'signal'),
)

sa.Table(
    'privacy_ledger', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=120), nullable=False),
    sa.Column('epsilon', sa.Float(), nullable=False),
    sa.Column('spent_after', sa.Float(), nullable=False),
    sa.Column('budget', sa.Float(), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('epsilons', sa.JSON(), nullable=False),
    sa.Column('tables', sa.JSON(), nullable=False),
    sa.Column('library', sa.String(length=60), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('seq'),
)

sa.Table(
    'team_members', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('team', sa.String(length=120), nullable=False),
    sa.Column('member', sa.String(length=120), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('team', 'member'),
    sa.Index('ix_team_members_member', 'member', unique=False),
    sa.Index('ix_team_members_team', 'team', unique=False),
)

sa.Table(
    'webhook_subscribers', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('owner', sa.String(length=130), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('secret', sa.LargeBinary(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.Index('ix_webhook_subscribers_owner', 'owner', unique=False),
)

sa.Table(
    'subjects', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bank_id', sa.Integer(), nullable=False),
    sa.Column('label', sa.String(length=300), nullable=False),
    sa.Column('pseudonym', sa.String(length=40), nullable=False),
    sa.Column('attributes', sa.JSON(), nullable=False),
    sa.Column('personal', sa.LargeBinary(), nullable=True),
    sa.Column('consent_expires', sa.DateTime(), nullable=True),
    sa.Column('protected_until', sa.Date(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['bank_id'], ['banks.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('bank_id', 'label'),
    sa.UniqueConstraint('pseudonym'),
    sa.Index('ix_subjects_bank_id', 'bank_id', unique=False),
)

sa.Table(
    'web_sessions', META,
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.Integer(), nullable=False),
    sa.Column('csrf', sa.String(length=64), nullable=False),
    sa.Column('revealed', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['key_id'], ['api_keys.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('token_hash'),
    sa.Index('ix_web_sessions_key_id', 'key_id', unique=False),
)

sa.Table(
    'ad_contacts', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bank_id', sa.Integer(), nullable=False),
    sa.Column('subject_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('value', sa.String(length=320), nullable=False),
    sa.ForeignKeyConstraint(['subject_id'], ['subjects.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('subject_id', 'kind', 'value'),
    sa.Index('ix_ad_contacts_lookup', 'bank_id', 'kind', 'value', unique=False),
    sa.Index('ix_ad_contacts_subject_id', 'subject_id', unique=False),
)

sa.Table(
    'ad_links', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bank_id', sa.Integer(), nullable=False),
    sa.Column('a', sa.Integer(), nullable=False),
    sa.Column('b', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('strength', sa.Float(), nullable=False),
    sa.Column('evidence', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['a'], ['subjects.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['b'], ['subjects.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('bank_id', 'a', 'b', 'kind'),
    sa.Index('ix_ad_links_a', 'a', unique=False),
    sa.Index('ix_ad_links_b', 'b', unique=False),
    sa.Index('ix_ad_links_bank_id', 'bank_id', unique=False),
)

sa.Table(
    'case_subjects', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('subject_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['subject_id'], ['subjects.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('subject_id'),
    sa.Index('ix_case_subjects_case_id', 'case_id', unique=False),
)

sa.Table(
    'items', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bank_id', sa.Integer(), nullable=False),
    sa.Column('subject_id', sa.Integer(), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=2000), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('format', sa.String(length=16), nullable=False),
    sa.Column('attributes', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['bank_id'], ['banks.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['subject_id'], ['subjects.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('bank_id', 'sha256'),
    sa.Index('ix_items_bank_id', 'bank_id', unique=False),
    sa.Index('ix_items_sha256', 'sha256', unique=False),
    sa.Index('ix_items_subject_id', 'subject_id', unique=False),
)

sa.Table(
    'ad_item_links', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bank_id', sa.Integer(), nullable=False),
    sa.Column('a', sa.Integer(), nullable=False),
    sa.Column('b', sa.Integer(), nullable=False),
    sa.Column('distance', sa.Integer(), nullable=False),
    sa.Column('witnesses', sa.Integer(), nullable=False),
    sa.Column('template', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['a'], ['items.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['b'], ['items.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('a', 'b'),
    sa.Index('ix_ad_item_links_a', 'a', unique=False),
    sa.Index('ix_ad_item_links_b', 'b', unique=False),
    sa.Index('ix_ad_item_links_bank_id', 'bank_id', unique=False),
)

sa.Table(
    'ad_linked_items', META,
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('bank_id', sa.Integer(), nullable=False),
    sa.Column('linked_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['items.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('item_id'),
    sa.Index('ix_ad_linked_items_bank_id', 'bank_id', unique=False),
)

sa.Table(
    'ad_photos', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bank_id', sa.Integer(), nullable=False),
    sa.Column('subject_id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('attributes', sa.JSON(), nullable=False),
    sa.Column('linked', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['items.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['subject_id'], ['subjects.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('subject_id', 'item_id'),
    sa.Index('ix_ad_photos_bank_id', 'bank_id', unique=False),
    sa.Index('ix_ad_photos_item_id', 'item_id', unique=False),
    sa.Index('ix_ad_photos_linked', 'linked', unique=False),
    sa.Index('ix_ad_photos_subject_id', 'subject_id', unique=False),
)

sa.Table(
    'ad_prints', META,
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('bank_id', sa.Integer(), nullable=False),
    sa.Column('pdq', sa.LargeBinary(), nullable=False),
    sa.Column('quality', sa.Float(), nullable=True),
    sa.Column('thumb', sa.LargeBinary(), nullable=True),
    sa.Column('trim_pdq', sa.LargeBinary(), nullable=True),
    sa.Column('trim_quality', sa.Float(), nullable=True),
    sa.Column('trim_thumb', sa.LargeBinary(), nullable=True),
    sa.Column('variants', sa.LargeBinary(), nullable=True),
    sa.Column('trim_variants', sa.LargeBinary(), nullable=True),
    sa.ForeignKeyConstraint(['item_id'], ['items.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('item_id'),
    sa.Index('ix_ad_prints_bank_id', 'bank_id', unique=False),
)

sa.Table(
    'candidates', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bank_id', sa.Integer(), nullable=False),
    sa.Column('subject_id', sa.Integer(), nullable=True),
    sa.Column('ref_item_id', sa.Integer(), nullable=False),
    sa.Column('query_sha256', sa.String(length=64), nullable=False),
    sa.Column('query_photo', sa.String(length=64), nullable=True),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('tier', sa.String(length=16), nullable=False),
    sa.Column('evidence', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('required_reviews', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.String(length=120), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('version', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('minor_policy', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('context', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['bank_id'], ['banks.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['ref_item_id'], ['items.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['subject_id'], ['subjects.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('query_sha256', 'bank_id', 'subject_id'),
    sa.Index('ix_candidates_bank_id', 'bank_id', unique=False),
    sa.Index('ix_candidates_query_sha256', 'query_sha256', unique=False),
    sa.Index('ix_candidates_ref_item_id', 'ref_item_id', unique=False),
    sa.Index('ix_candidates_state', 'state', unique=False),
    sa.Index('ix_candidates_subject_id', 'subject_id', unique=False),
    sa.Index('ix_candidates_tier', 'tier', unique=False),
)

sa.Table(
    'image_texts', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('bank_id', sa.Integer(), nullable=False),
    sa.Column('annotator', sa.String(length=32), nullable=False),
    sa.Column('text', sa.String(length=500), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.Column('left', sa.Integer(), nullable=False),
    sa.Column('top', sa.Integer(), nullable=False),
    sa.Column('right', sa.Integer(), nullable=False),
    sa.Column('bottom', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['items.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.Index('ix_image_texts_bank_id', 'bank_id', unique=False),
    sa.Index('ix_image_texts_item_id', 'item_id', unique=False),
)

sa.Table(
    'vectors', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('bank_id', sa.Integer(), nullable=False),
    sa.Column('signal', sa.String(length=64), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('quality', sa.Float(), nullable=True),
    sa.Column('box', sa.JSON(), nullable=True),
    sa.Column('extra', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['items.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.Index('ix_vectors_bank_id', 'bank_id', unique=False),
    sa.Index('ix_vectors_item_id', 'item_id', unique=False),
)

sa.Table(
    'watch_checks', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('watcher_bank_id', sa.Integer(), nullable=False),
    sa.Column('upto_item_id', sa.Integer(), nullable=False),
    sa.Column('result', sa.String(length=16), nullable=False),
    sa.Column('checked_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['items.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['watcher_bank_id'], ['banks.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('item_id', 'watcher_bank_id'),
    sa.Index('ix_watch_checks_item_id', 'item_id', unique=False),
    sa.Index('ix_watch_checks_watcher_bank_id', 'watcher_bank_id', unique=False),
)

sa.Table(
    'alerts', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.String(length=40), nullable=False),
    sa.Column('candidate_id', sa.Integer(), nullable=False),
    sa.Column('bank_id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=True),
    sa.Column('owner', sa.String(length=130), nullable=True),
    sa.Column('confirmed_at', sa.DateTime(), nullable=False),
    sa.Column('acked_at', sa.DateTime(), nullable=True),
    sa.Column('acked_by', sa.String(length=120), nullable=True),
    sa.Column('outcome', sa.String(length=32), nullable=True),
    sa.Column('outcome_at', sa.DateTime(), nullable=True),
    sa.Column('outcome_by', sa.String(length=120), nullable=True),
    sa.ForeignKeyConstraint(['bank_id'], ['banks.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['candidate_id'], ['candidates.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('candidate_id'),
    sa.UniqueConstraint('event_id'),
    sa.Index('ix_alerts_bank_id', 'bank_id', unique=False),
    sa.Index('ix_alerts_owner', 'owner', unique=False),
)

sa.Table(
    'candidate_requesters', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('candidate_id', sa.Integer(), nullable=False),
    sa.Column('requester', sa.String(length=120), nullable=False),
    sa.ForeignKeyConstraint(['candidate_id'], ['candidates.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('candidate_id', 'requester'),
    sa.Index('ix_candidate_requesters_candidate_id', 'candidate_id', unique=False),
)

sa.Table(
    'photo_contacts', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bank_id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('text_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('value', sa.String(length=320), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['items.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['text_id'], ['image_texts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.Index('ix_photo_contacts_item_id', 'item_id', unique=False),
    sa.Index('ix_photo_contacts_lookup', 'bank_id', 'kind', 'value', unique=False),
)

sa.Table(
    'review_decisions', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('candidate_id', sa.Integer(), nullable=False),
    sa.Column('reviewer', sa.String(length=120), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('state_after', sa.String(length=16), nullable=False),
    sa.Column('note', sa.LargeBinary(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['candidate_id'], ['candidates.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.Index('ix_review_decisions_candidate_id', 'candidate_id', unique=False),
)

sa.Table(
    'scene_features', META,
    sa.Column('vector_id', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['vector_id'], ['vectors.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('vector_id'),
)

sa.Table(
    'alert_deliveries', META,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('alert_id', sa.Integer(), nullable=False),
    sa.Column('subscriber_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
    sa.Column('claimed_until', sa.DateTime(), nullable=True),
    sa.Column('delivered_at', sa.DateTime(), nullable=True),
    sa.Column('last_status', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.String(length=300), nullable=True),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['subscriber_id'], ['webhook_subscribers.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('alert_id', 'subscriber_id'),
    sa.Index('ix_alert_deliveries_alert_id', 'alert_id', unique=False),
    sa.Index('ix_alert_deliveries_next_attempt_at', 'next_attempt_at', unique=False),
    sa.Index('ix_alert_deliveries_state', 'state', unique=False),
)


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    present = set(inspector.get_table_names())
    for table in META.sorted_tables:
        if table.name not in present:
            table.create(bind)
        else:
            _adopt(inspector, table)


def _adopt(inspector: sa.Inspector, table: sa.Table) -> None:
    """Bring a table that a pre-migration release made up to the baseline, adding only."""
    columns = {c["name"] for c in inspector.get_columns(table.name)}
    for column in table.columns:
        if column.name in columns:
            continue
        if not column.nullable and column.server_default is None:
            raise RuntimeError(f"the catalog's table {table.name} lacks column {column.name}, "
                               "which has no default for existing rows; upgrade it by hand")
        op.add_column(table.name, column._copy())
    indexes = {i["name"] for i in inspector.get_indexes(table.name)}
    for index in table.indexes:
        if index.name not in indexes:
            op.create_index(index.name, table.name, [c.name for c in index.columns], unique=index.unique)


def downgrade() -> None:
    raise RuntimeError("the baseline is not undone: that would drop the whole catalog")
