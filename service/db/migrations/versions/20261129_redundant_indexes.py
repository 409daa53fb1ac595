"""drop redundant indexes, and the foreign-key indexes no query reads

Dropped: single-column indexes that a unique constraint starts with, and the foreign-key
indexes of launch_state and web_session. With a young table's statistics, PostgreSQL's
generic plan for a prepared lookup by (platform_id, sub) used ix_person_platform_id and
filtered every person of the platform; the launch's take of its login state likewise
scanned every state of the platform through ix_launch_state_platform_id. See
service/db/models/__init__.py.

Revision ID: core_0002
Revises: lti_0002
Create Date: 2026-11-29 09:30:00
"""
from alembic import op

revision = 'core_0002'
down_revision = 'lti_0002'
branch_labels = None
depends_on = None

# (table, column): the index ix_<table>_<column>
DROPPED = (
    ('platform', 'issuer'),
    ('deployment', 'platform_id'),
    ('person', 'platform_id'),
    ('course', 'deployment_id'),
    ('enrolment', 'course_id'),
    ('competency_level_template', 'competency_id'),
    ('course_competency', 'course_id'),
    ('policy_version', 'scope_key'),
    ('effective_policy', 'course_id'),
    ('delivery_consent', 'credential_id'),
    ('award', 'course_id'),
    ('credential', 'status_list_id'),
    ('launch_state', 'platform_id'),
    ('service_token', 'platform_id'),
    ('web_session', 'person_id'),
    ('web_session', 'platform_id'),
    ('web_session', 'deployment_id'),
    ('web_session', 'course_id'),
    ('evidence', 'course_id'),
    ('evidence_revision', 'evidence_id'),
    ('verification_event', 'course_id'),
    ('person_link', 'platform_id'),
)


def upgrade() -> None:
    for table, column in DROPPED:
        op.drop_index(f'ix_{table}_{column}', table_name=table)


def downgrade() -> None:
    for table, column in DROPPED:
        op.create_index(f'ix_{table}_{column}', table, [column], unique=False)
