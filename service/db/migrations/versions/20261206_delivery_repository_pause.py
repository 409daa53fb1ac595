"""delivery_repository: a rate limit pauses the whole repository

Revision ID: delivery_0002
Revises: core_0002
Create Date: 2026-12-06 13:30:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import service.db.types

revision = 'delivery_0002'
down_revision = 'core_0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('delivery_repository', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('paused_until', service.db.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                'paused_reason',
                sqlmodel.sql.sqltypes.AutoString(length=500),
                nullable=False,
                server_default='',
            )
        )


def downgrade() -> None:
    with op.batch_alter_table('delivery_repository', schema=None) as batch_op:
        batch_op.drop_column('paused_reason')
        batch_op.drop_column('paused_until')
