"""course_sync: scheduled LMS pulls; course_setup.nrps_url and interval; enrolment.status

Revision ID: sync_0001
Revises: issuer_0002
Create Date: 2026-12-06 14:10:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import service.db.types

revision = 'sync_0001'
down_revision = 'issuer_0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('course_setup', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                'nrps_url',
                sqlmodel.sql.sqltypes.AutoString(length=1000),
                nullable=False,
                server_default='',
            )
        )
        batch_op.add_column(sa.Column('sync_interval_seconds', sa.Integer(), nullable=True))
    with op.batch_alter_table('enrolment', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                'status',
                sqlmodel.sql.sqltypes.AutoString(length=20),
                nullable=False,
                server_default='active',
            )
        )
    op.create_table(
        'course_sync',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('course_id', sa.Integer(), nullable=False),
        sa.Column('wanted_at', service.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column('claimed_by', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column('claimed_until', service.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column('attempted_at', service.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column('pulled_at', service.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column('error', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('members', sa.Integer(), nullable=True),
        sa.Column('roster_error', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column('attention', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ['course_id'], ['course.id'], name=op.f('fk_course_sync_course_id_course')
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_course_sync')),
        sa.UniqueConstraint('course_id', name=op.f('uq_course_sync_course_id')),
    )


def downgrade() -> None:
    op.drop_table('course_sync')
    with op.batch_alter_table('enrolment', schema=None) as batch_op:
        batch_op.drop_column('status')
    with op.batch_alter_table('course_setup', schema=None) as batch_op:
        batch_op.drop_column('sync_interval_seconds')
        batch_op.drop_column('nrps_url')
