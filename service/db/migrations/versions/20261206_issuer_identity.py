"""issuer_identity: the base URL and did:web this database issues as

A database that already holds credentials gets the identity its oldest credential names
(the credential's id is {base URL}/credentials/{uuid}, its issuer the did:web of that base
URL); credentials are never re-signed, so that is the URL the deployment was set up with.
Otherwise the first process that sets up issuance records it (service/issuer/identity.py).

Revision ID: issuer_0002
Revises: core_0003
Create Date: 2026-12-06 13:40:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import service.db.types

revision = 'issuer_0002'
down_revision = 'core_0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    identity = op.create_table(
        'issuer_identity',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('base_url', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column('did', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column('created_at', service.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_issuer_identity')),
    )
    credential = sa.table(
        'credential',
        sa.column('id', sa.Integer()),
        sa.column('document', sa.JSON()),
        sa.column('issued_at', service.db.types.UTCDateTime(timezone=True)),
    )
    oldest = op.get_bind().execute(
        sa.select(credential.c.document, credential.c.issued_at)
        .order_by(credential.c.id)
        .limit(1)
    ).first()
    if oldest is None:
        return
    document, issued_at = oldest
    cred_id = document.get('id') if isinstance(document, dict) else None
    issuer = document.get('issuer') if isinstance(document, dict) else None
    did = issuer.get('id') if isinstance(issuer, dict) else issuer
    if not isinstance(cred_id, str) or '/credentials/' not in cred_id:
        return
    if not isinstance(did, str) or not did.startswith('did:web:'):
        return
    base_url = cred_id.rsplit('/credentials/', 1)[0]
    op.bulk_insert(
        identity, [{'id': 1, 'base_url': base_url, 'did': did, 'created_at': issued_at}]
    )


def downgrade() -> None:
    op.drop_table('issuer_identity')
