"""repository_check: connection tests asked for on the administrator's page, run by a worker

Revision ID: delivery_0004
Revises: sync_0002
Create Date: 2026-12-06 16:50:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
from sqlalchemy.dialects import postgresql
import service.db.types

revision = 'delivery_0004'
down_revision = 'sync_0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'repository_check',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('repository_id', sa.Integer(), nullable=False),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column('requested_by', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column('requested_at', service.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('started_at', service.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column('finished_at', service.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column('worker', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column('ok', sa.Boolean(), nullable=True),
        sa.Column('summary', sa.Text(), nullable=False),
        sa.Column('problems', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
        sa.ForeignKeyConstraint(
            ['repository_id'],
            ['delivery_repository.id'],
            name=op.f('fk_repository_check_repository_id_delivery_repository'),
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_repository_check')),
    )
    with op.batch_alter_table('repository_check', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_repository_check_repository_id'), ['repository_id'], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table('repository_check', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_repository_check_repository_id'))
    op.drop_table('repository_check')
