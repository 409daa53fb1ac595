"""badge_image, competency.image_sha256: the badge image an instructor designs

Revision ID: assessment_0002
Revises: delivery_0004
Create Date: 2026-12-06 17:00:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import service.db.types

revision = 'assessment_0002'
down_revision = 'delivery_0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'badge_image',
        sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('media_type', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column('width', sa.Integer(), nullable=False),
        sa.Column('height', sa.Integer(), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column('created_at', service.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('sha256', name=op.f('pk_badge_image')),
    )
    with op.batch_alter_table('competency', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('image_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table('competency', schema=None) as batch_op:
        batch_op.drop_column('image_sha256')
    op.drop_table('badge_image')
