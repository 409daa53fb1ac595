"""evaluation_job: what the learner's last evaluation read (a re-evaluation of the same skips the engine)

Revision ID: flows_0005
Revises: delivery_0005
Create Date: 2026-12-06 20:10:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = 'flows_0005'
down_revision = 'delivery_0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('evaluation_job', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                'evaluated_inputs',
                sqlmodel.sql.sqltypes.AutoString(length=64),
                nullable=False,
                server_default='',
            )
        )


def downgrade() -> None:
    with op.batch_alter_table('evaluation_job', schema=None) as batch_op:
        batch_op.drop_column('evaluated_inputs')
