"""course_setup: a resource link id of the course, for NRPS requests with rlid

Revision ID: sync_0002
Revises: delivery_0003
Create Date: 2026-12-06 17:10:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = 'sync_0002'
down_revision = 'delivery_0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # server default '': the previous release's processes insert rows without it
    with op.batch_alter_table('course_setup', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                'nrps_rlid',
                sqlmodel.sql.sqltypes.AutoString(length=255),
                nullable=False,
                server_default='',
            )
        )


def downgrade() -> None:
    with op.batch_alter_table('course_setup', schema=None) as batch_op:
        batch_op.drop_column('nrps_rlid')
