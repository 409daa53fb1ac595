"""evaluation_job: the evaluation queue; award: one issued (and one pending) row per line

Revision ID: flows_0004
Revises: sync_0001
Create Date: 2026-12-06 14:10:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import service.db.types

revision = 'flows_0004'
down_revision = 'sync_0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'evaluation_job',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('course_id', sa.Integer(), nullable=False),
        sa.Column('person_id', sa.Integer(), nullable=False),
        sa.Column('due_at', service.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column('lease_token', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column('lease_expires_at', service.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column('evaluated_at', service.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column('updated_at', service.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ['course_id'], ['course.id'], name=op.f('fk_evaluation_job_course_id_course')
        ),
        sa.ForeignKeyConstraint(
            ['person_id'], ['person.id'], name=op.f('fk_evaluation_job_person_id_person')
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_evaluation_job')),
    )
    op.create_index(
        'uq_evaluation_job_course_person', 'evaluation_job', ['course_id', 'person_id'], unique=True
    )
    op.create_index(op.f('ix_evaluation_job_due_at'), 'evaluation_job', ['due_at'], unique=False)
    # Installs that raced two evaluations of one learner before this revision may hold two
    # issued rows on a line: the older one is the one a later upgrade would have replaced.
    op.execute(
        sa.text(
            "UPDATE award SET state = 'superseded' WHERE state = 'issued' AND id < ("
            "SELECT max(a2.id) FROM award a2 WHERE a2.state = 'issued' "
            "AND a2.course_id = award.course_id AND a2.person_id = award.person_id "
            "AND a2.line_key = award.line_key)"
        )
    )
    op.execute(
        sa.text(
            "UPDATE award SET state = 'withdrawn' WHERE state = 'pending_approval' AND id < ("
            "SELECT max(a2.id) FROM award a2 WHERE a2.state = 'pending_approval' "
            "AND a2.course_id = award.course_id AND a2.person_id = award.person_id "
            "AND a2.line_key = award.line_key)"
        )
    )
    for name, state in (('issued', 'issued'), ('pending', 'pending_approval')):
        op.create_index(
            f'uq_award_line_{name}',
            'award',
            ['course_id', 'person_id', 'line_key'],
            unique=True,
            sqlite_where=sa.text(f"state = '{state}'"),
            postgresql_where=sa.text(f"state = '{state}'"),
        )


def downgrade() -> None:
    op.drop_index('uq_award_line_pending', table_name='award')
    op.drop_index('uq_award_line_issued', table_name='award')
    op.drop_index(op.f('ix_evaluation_job_due_at'), table_name='evaluation_job')
    op.drop_index('uq_evaluation_job_course_person', table_name='evaluation_job')
    op.drop_table('evaluation_job')
