"""enrolment: the learner's last evaluation on launch

Revision ID: flows_0002
Revises: flows_0001
Create Date: 2026-11-29 00:05:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import service.db.types

revision = 'flows_0002'
down_revision = 'flows_0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('enrolment', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                'evaluated_inputs',
                sqlmodel.sql.sqltypes.AutoString(length=64),
                nullable=False,
                server_default='',
            )
        )
        batch_op.add_column(
            sa.Column('evaluated_at', service.db.types.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table('enrolment', schema=None) as batch_op:
        batch_op.drop_column('evaluated_at')
        batch_op.drop_column('evaluated_inputs')
