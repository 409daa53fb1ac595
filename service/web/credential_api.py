"""The credentials API's revocations: ``POST /api/credentials/{id}/revoke`` and ``/unrevoke``.

They live above the issuer (which owns the rest of ``/api/credentials``) because a
revocation is the same act as on the instructor page and ``microcred credential revoke``
(``flows.revoking``): the status list, the revocation queued to every repository the
credential reached, the course's re-award block and the audit row.
"""

from __future__ import annotations

from fastapi import APIRouter

from service.db.types import utcnow
from service.deps import SettingsDep, WriteSessionDep
from service.flows import revoking
from service.issuer.router import ActorDep, public_credential
from service.issuer.schemas import CredentialPublic, RevocationRequest

__all__ = ["router"]

router = APIRouter(tags=["issuer"])


@router.post("/api/credentials/{credential_id}/revoke", response_model=CredentialPublic)
def revoke_credential(
    credential_id: str,
    body: RevocationRequest,
    session: WriteSessionDep,
    settings: SettingsDep,
    actor: ActorDep,
) -> CredentialPublic:
    """Revoke a credential: its status-list bit is set, the revocation is queued to every
    repository that holds it, the reason is audited."""
    row = revoking.revoke_credential(
        session,
        settings=settings,
        uuid=credential_id,
        reason=body.reason,
        actor=actor,
        now=utcnow(),
    )
    session.commit()
    return public_credential(row, settings)


@router.post("/api/credentials/{credential_id}/unrevoke", response_model=CredentialPublic)
def unrevoke_credential(
    credential_id: str,
    body: RevocationRequest,
    session: WriteSessionDep,
    settings: SettingsDep,
    actor: ActorDep,
) -> CredentialPublic:
    """Undo a revocation made in error (audited with the reason); refused with 409 for a
    course award (allow re-award instead) or when a repository already revoked its copy."""
    row = revoking.unrevoke_credential(
        session,
        settings=settings,
        uuid=credential_id,
        reason=body.reason,
        actor=actor,
        now=utcnow(),
    )
    session.commit()
    return public_credential(row, settings)
