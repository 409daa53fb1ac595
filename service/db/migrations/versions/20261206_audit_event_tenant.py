"""audit_event: the tenant (platform, deployment, course) each row belongs to

An administrator launched from a platform reads only the audit rows of the platform and
deployment of the launch (README "Roles and administration"). New rows get their tenant
from service.audit; existing rows are backfilled here from their subject, as service.audit
would have set them: course:N and policy:course:N… (the course), credential:UUID (the
course of the award that holds it), verification_event:N (its course), platform:N (the
platform only). Rows about institution-wide things keep no tenant.

Revision ID: core_0003
Revises: flows_0003
Create Date: 2026-12-06 13:40:00
"""
from alembic import op
import sqlalchemy as sa

revision = 'core_0003'
down_revision = 'flows_0003'
branch_labels = None
depends_on = None

# Each statement sets course_id for rows whose subject names a course one way; CAST(… AS
# VARCHAR) and || read the same on SQLite and PostgreSQL, and no cast can fail on odd text.
_COURSE_FROM_SUBJECT = (
    """UPDATE audit_event SET course_id = (
         SELECT c.id FROM course c
         WHERE audit_event.subject = 'course:' || CAST(c.id AS VARCHAR))
       WHERE course_id IS NULL AND subject LIKE 'course:%'""",
    """UPDATE audit_event SET course_id = (
         SELECT c.id FROM course c
         WHERE audit_event.subject = 'policy:course:' || CAST(c.id AS VARCHAR)
            OR audit_event.subject LIKE 'policy:course:' || CAST(c.id AS VARCHAR) || '/%')
       WHERE course_id IS NULL AND subject LIKE 'policy:course:%'""",
    """UPDATE audit_event SET course_id = (
         SELECT MIN(a.course_id) FROM award a
         WHERE audit_event.subject = 'credential:' || a.credential_uuid)
       WHERE course_id IS NULL AND subject LIKE 'credential:%'""",
    """UPDATE audit_event SET course_id = (
         SELECT v.course_id FROM verification_event v
         WHERE audit_event.subject = 'verification_event:' || CAST(v.id AS VARCHAR))
       WHERE course_id IS NULL AND subject LIKE 'verification_event:%'""",
)
_TENANT_FROM_COURSE = (
    """UPDATE audit_event SET deployment_id = (
         SELECT c.deployment_id FROM course c WHERE c.id = audit_event.course_id)
       WHERE course_id IS NOT NULL""",
    """UPDATE audit_event SET platform_id = (
         SELECT d.platform_id FROM deployment d WHERE d.id = audit_event.deployment_id)
       WHERE deployment_id IS NOT NULL""",
    """UPDATE audit_event SET platform_id = (
         SELECT p.id FROM platform p
         WHERE audit_event.subject = 'platform:' || CAST(p.id AS VARCHAR))
       WHERE platform_id IS NULL AND subject LIKE 'platform:%'""",
)


def upgrade() -> None:
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('platform_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('deployment_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('course_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f('fk_audit_event_platform_id_platform'), 'platform', ['platform_id'], ['id']
        )
        batch_op.create_foreign_key(
            batch_op.f('fk_audit_event_deployment_id_deployment'),
            'deployment',
            ['deployment_id'],
            ['id'],
        )
        batch_op.create_foreign_key(
            batch_op.f('fk_audit_event_course_id_course'), 'course', ['course_id'], ['id']
        )
        batch_op.create_index('ix_audit_event_deployment', ['deployment_id', 'id'], unique=False)
        batch_op.create_index('ix_audit_event_platform', ['platform_id', 'id'], unique=False)
    for statement in (*_COURSE_FROM_SUBJECT, *_TENANT_FROM_COURSE):
        op.execute(statement)


def downgrade() -> None:
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_event_platform')
        batch_op.drop_index('ix_audit_event_deployment')
        batch_op.drop_constraint(
            batch_op.f('fk_audit_event_course_id_course'), type_='foreignkey'
        )
        batch_op.drop_constraint(
            batch_op.f('fk_audit_event_deployment_id_deployment'), type_='foreignkey'
        )
        batch_op.drop_constraint(
            batch_op.f('fk_audit_event_platform_id_platform'), type_='foreignkey'
        )
        batch_op.drop_column('course_id')
        batch_op.drop_column('deployment_id')
        batch_op.drop_column('platform_id')
