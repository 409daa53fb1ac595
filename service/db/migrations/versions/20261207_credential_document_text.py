"""credential.document as TEXT on PostgreSQL: the signed bytes as serialised, no JSONB

Revision ID: issuer_0003
Revises: flows_0005
Create Date: 2026-12-07 00:10:00

JSONB parsed and re-encoded every ~5-9 KB credential on the way in (about 0.2 ms of server
CPU per row, the largest part of a credential's INSERT) and kept keys in its own order; the
column now holds the serialised document, the VC-JWT's payload bytes, as SQLite always
has. Existing rows keep their JSONB text form (same keys and values). SQLite: no change.
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = 'issuer_0003'
down_revision = 'flows_0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.alter_column(
        'credential',
        'document',
        type_=sa.Text(),
        existing_type=postgresql.JSONB(),
        existing_nullable=False,
        postgresql_using='document::text',
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.alter_column(
        'credential',
        'document',
        type_=postgresql.JSONB(),
        existing_type=sa.Text(),
        existing_nullable=False,
        postgresql_using='document::jsonb',
    )
