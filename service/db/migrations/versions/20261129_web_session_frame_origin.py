"""web_session: the origin that frames the session's pages

Revision ID: lti_0002
Revises: flows_0002
Create Date: 2026-11-29 00:30:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = 'lti_0002'
down_revision = 'flows_0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('web_session', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                'frame_origin',
                sqlmodel.sql.sqltypes.AutoString(length=300),
                nullable=False,
                server_default='',
            )
        )


def downgrade() -> None:
    with op.batch_alter_table('web_session', schema=None) as batch_op:
        batch_op.drop_column('frame_origin')
