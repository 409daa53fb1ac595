"""status_list.allocated counts every list's entries (kept by the issuer at each commit)

Revision ID: issuer_0004
Revises: issuer_0003
Create Date: 2026-12-07 03:30:00

The issuer counted an open list's credentials (``count(*)``) once per transaction: at
5,000 x 8 that read every credential of the list once per worker batch, PostgreSQL's cost
per credential growing with the table. ``allocated`` was written only once a list was found
full; the issuer now adds each transaction's entries to it as it commits, and this sets it
for the lists already open. No schema change: a process of the previous release still
counts, and ignores the column until the list is full.
"""
from alembic import op

revision = 'issuer_0004'
down_revision = 'issuer_0003'
branch_labels = None
depends_on = None

_TAKEN = '(SELECT count(*) FROM credential WHERE credential.status_list_id = status_list.id)'


def upgrade() -> None:
    op.execute(f'UPDATE status_list SET allocated = {_TAKEN} WHERE allocated < {_TAKEN}')


def downgrade() -> None:
    pass  # the counts stay true; the previous release reads them only once a list is full
