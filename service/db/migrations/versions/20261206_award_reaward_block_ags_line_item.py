"""award: a person's revocation blocks re-award; ags_line_item: one gradebook column

Revision ID: flows_0003
Revises: delivery_0002
Create Date: 2026-12-06 13:40:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import service.db.types

revision = 'flows_0003'
down_revision = 'delivery_0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('award', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('reaward_blocked', sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column(
                'revoked_by',
                sqlmodel.sql.sqltypes.AutoString(length=300),
                nullable=False,
                server_default='',
            )
        )
    # Revocations made before this revision by a person (not the rules' own, whose reason
    # the code writes as "A re-evaluation gives …") keep blocking re-award, as intended.
    op.execute(
        sa.text(
            "UPDATE award SET reaward_blocked = :yes "
            "WHERE state = 'revoked' AND review NOT LIKE 'A re-evaluation gives %'"
        ).bindparams(yes=True)
    )
    op.create_table(
        'ags_line_item',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('platform_id', sa.Integer(), nullable=True),
        sa.Column('lineitems_url', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column('resource_id', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column('url', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column('claim_token', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column('claimed_until', service.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column('created_at', service.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_ags_line_item')),
        sa.UniqueConstraint('key', name=op.f('uq_ags_line_item_key')),
    )


def downgrade() -> None:
    op.drop_table('ags_line_item')
    with op.batch_alter_table('award', schema=None) as batch_op:
        batch_op.drop_column('revoked_by')
        batch_op.drop_column('reaward_blocked')
