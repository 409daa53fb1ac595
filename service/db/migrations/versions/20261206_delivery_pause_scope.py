"""delivery pauses per part of a repository: outbox_message.pause_scope, delivery_pause

A 429 from one LMS's gradebook paused the gradebook writes to every LMS (the AGS
repository serves every platform); a scoped row's rate limit now pauses its scope only.

Revision ID: delivery_0005
Revises: assessment_0002
Create Date: 2026-12-06 18:00:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import service.db.types

revision = 'delivery_0005'
down_revision = 'assessment_0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # server default: the previous release's web processes leave the column out
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                'pause_scope',
                sqlmodel.sql.sqltypes.AutoString(length=100),
                nullable=False,
                server_default='',
            )
        )
    op.create_table(
        'delivery_pause',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('repository_id', sa.Integer(), nullable=False),
        sa.Column('scope', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column('paused_until', service.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('paused_reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ['repository_id'],
            ['delivery_repository.id'],
            name=op.f('fk_delivery_pause_repository_id_delivery_repository'),
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery_pause')),
        sa.UniqueConstraint(
            'repository_id', 'scope', name=op.f('uq_delivery_pause_repository_id_scope')
        ),
    )


def downgrade() -> None:
    op.drop_table('delivery_pause')
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.drop_column('pause_scope')
