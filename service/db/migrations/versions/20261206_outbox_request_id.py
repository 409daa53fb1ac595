"""outbox_message: the request id of the HTTP request that caused the row

Revision ID: delivery_0003
Revises: flows_0004
Create Date: 2026-12-06 14:30:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = 'delivery_0003'
down_revision = 'flows_0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable: the previous release's workers and web processes leave it out (docs/operations.md)
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('request_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.drop_column('request_id')
