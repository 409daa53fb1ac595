"""course_setup: a resource link id of the course, for NRPS requests with rlid;
course_sync: when the course was last pulled in full (incremental pulls in between)

Revision ID: sync_0002
Revises: delivery_0003
Create Date: 2026-12-06 17:10:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

import service.db.types

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

    with op.batch_alter_table('course_sync', schema=None) as batch_op:
        batch_op.add_column(sa.Column('full_pulled_at', service.db.types.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('course_sync', schema=None) as batch_op:
        batch_op.drop_column('full_pulled_at')
    with op.batch_alter_table('course_setup', schema=None) as batch_op:
        batch_op.drop_column('nrps_rlid')
