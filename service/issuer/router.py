"""Issuer HTTP endpoints: identity documents, contexts, status lists, credentials, verify.

Public, cacheable documents carry ``Access-Control-Allow-Origin: *`` so browser-based
verifiers (wallet web apps, VerifierPlus) can fetch them.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, Response
from sqlmodel import Session

from service import deps, metrics, ratelimit
from service.db.engine import session as db_session
from service.db.models import Credential
from service.db.types import utcnow
from service.deps import EngineDep, RowId, SessionDep, SettingsDep, WriteSessionDep
from service.errors import BadInput, NotFound, TooManyRequests
from service.issuer import contexts, keys, limits, pool, repository, service
from service.issuer.pool import VerifierPool
from service.issuer.schemas import CredentialCreate, CredentialPublic
from service.issuer.types import VerificationReport
from service.settings import Settings

__all__ = ["ActorDep", "public_credential", "router"]

router = APIRouter(tags=["issuer"])

PUBLIC = {"Access-Control-Allow-Origin": "*"}
MAX_VERIFY_BYTES = limits.DEFAULT.max_bytes


def _ring(engine: Any, settings: Settings) -> keys.Keyring:
    with db_session(engine) as s:
        ring = service.keyring(s, settings)
    if ring.signing_key is None:
        with db_session(engine, write=True) as s:
            ring = service.keyring(s, settings, create=True)
            s.commit()
    return ring


def _json(body: Any, media_type: str, *, max_age: int = 300, **headers: str) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False, indent=2),
        media_type=media_type,
        headers={"Cache-Control": f"public, max-age={max_age}", **PUBLIC, **headers},
    )


@router.get("/.well-known/did.json")
@router.get("/did.json", include_in_schema=False)
def did_document(engine: EngineDep, settings: SettingsDep) -> Response:
    """The issuer's did:web DID document (all keys, active and retired)."""
    return _json(keys.did_document(_ring(engine, settings)), "application/did+json")


@router.get("/.well-known/jwks.json")
def jwks(engine: EngineDep, settings: SettingsDep) -> Response:
    """The issuer's VC-JWT public keys as a JWK Set."""
    return _json(keys.jwks(_ring(engine, settings)), "application/jwk-set+json")


@router.get("/issuer/keys/{name}")
def jwk(name: str, engine: EngineDep, settings: SettingsDep) -> Response:
    """One VC-JWT public key: the document a JWT ``kid`` dereferences to."""
    found = _ring(engine, settings).jwk(name)
    if found is None:
        raise NotFound("no such issuer key")
    return _json(found, "application/jwk+json")


@router.get("/issuer")
def issuer_profile(settings: SettingsDep) -> Response:
    """The issuer's Open Badges 3.0 Profile."""
    return _json(service.profile_document(settings), "application/ld+json")


@router.get(contexts.EU_CONTEXT_PATH)
def eu_context() -> Response:
    """microcred's JSON-LD context for the EU micro-credential elements."""
    body = contexts.bundled_context(contexts.EU_CONTEXT_FILE)
    return _json(body, "application/ld+json", max_age=86400)


@router.get("/status/{list_id}")
def status_list(
    list_id: RowId,
    session: SessionDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """A signed BitstringStatusListCredential (revocation bits)."""
    doc, etag = service.status_list_response(session, list_id)
    headers = {"ETag": etag, "Cache-Control": "public, max-age=300, must-revalidate", **PUBLIC}
    if if_none_match and etag in [t.strip() for t in if_none_match.split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(
        json.dumps(doc, ensure_ascii=False), media_type="application/json", headers=headers
    )


async def limit_verify(request: Request) -> None:
    """Per-IP rate limit of ``POST /verify`` (``MICROCRED_VERIFY_RATE_LIMIT_PER_MINUTE``)."""
    per_minute = request.app.state.settings.verify_rate_limit_per_minute
    if wait := ratelimit.wait(request, "verify_buckets", per_minute):
        raise TooManyRequests(
            f"Too many credentials verified from your network in the last minute; try again "
            f"in {wait} s.",
            retry_after=wait,
            hint="To check many credentials, run `microcred verify` on your own machine.",
        )


def shutdown(app: Any) -> None:
    """Stop the verifier's threads and worker processes (the app's shutdown)."""
    verifier: VerifierPool | None = getattr(app.state, "verifier_pool", None)
    if verifier is not None:
        verifier.shutdown()
    pool.shutdown_processes()


def _verifier_pool(request: Request) -> VerifierPool:
    verifier: VerifierPool | None = getattr(request.app.state, "verifier_pool", None)
    if verifier is None:
        size = request.app.state.settings.verify_concurrency
        verifier = request.app.state.verifier_pool = VerifierPool(size)
    return verifier


# The body is read raw (JSON or a compact JWS), so OpenAPI is told what it takes.
_VERIFY_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"type": "object", "description": "A credential"}},
        "text/plain": {"schema": {"type": "string", "description": "A VC-JWT (compact JWS)"}},
    },
}


@router.post(
    "/verify",
    dependencies=[Depends(limit_verify)],
    openapi_extra={"requestBody": _VERIFY_BODY},
)
async def verify_credential(request: Request) -> JSONResponse:
    """Verify a posted credential (JSON with a proof, or a compact JWS as text)."""
    verifier = _verifier_pool(request)
    if not verifier.try_reserve():  # refused before reading the body: a flood stays cheap
        raise verifier.busy()
    try:
        body = await request.body()
    except BaseException:
        verifier.release()
        raise
    if len(body) > MAX_VERIFY_BYTES:
        verifier.release()
        raise BadInput(f"the credential is larger than {MAX_VERIFY_BYTES} bytes")
    engine = request.app.state.engine
    settings: Settings = request.app.state.settings

    def run() -> VerificationReport:
        with db_session(engine) as s:
            return service.verify_input(s, settings, body, now=utcnow(), hasher=verifier.hasher)

    # the pool's own threads and worker processes, never the event loop or page threads
    report = await verifier.run(run, reserved=True)
    metrics.count_verification(request.app, valid=report.valid, reasons=report.reasons)
    return JSONResponse(report.as_dict())


# The issuing API needs an API token with the ``credentials:write`` scope.
ActorDep = Annotated[str, Depends(deps.api_scope("credentials:write"))]


def public_credential(row: Credential, settings: Settings) -> CredentialPublic:
    return CredentialPublic(
        id=row.uuid,
        url=service.credential_url(settings, row.uuid),
        revoked=row.revoked,
        revocation_reason=row.revocation_reason,
        issued_at=row.issued_at,
        valid_until=row.valid_until,
        document=row.document,
        jwt=row.jwt,
    )


def _parts(session: Session, ids: list[str]) -> list[dict[str, Any]]:
    parts = []
    for part_id in ids:
        row = repository.credential_by_uuid(session, part_id)
        if row is None:
            raise BadInput(f"part credential {part_id} does not exist")
        if row.revoked:
            raise BadInput(f"part credential {part_id} is revoked")
        parts.append(row.document)
    return parts


@router.post("/api/credentials", status_code=201, response_model=CredentialPublic)
def create_credential(
    body: CredentialCreate, session: WriteSessionDep, settings: SettingsDep, actor: ActorDep
) -> CredentialPublic:
    """Issue a credential from learner and achievement data."""
    now = utcnow()
    award = body.to_award(now)
    if award.awarded_at.tzinfo is None or award.awarded_at > now:
        raise BadInput("awarded_at must be a past date-time with a time zone")
    if award.valid_until is not None and award.valid_until.tzinfo is None:
        raise BadInput("valid_until must have a time zone")
    row = service.issue(
        session,
        settings=settings,
        award=award,
        now=now,
        actor=actor,
        parts=_parts(session, body.parts),
    )
    session.commit()
    return public_credential(row, settings)


@router.get("/api/credentials/{credential_id}", response_model=CredentialPublic)
def get_credential(
    credential_id: str, session: SessionDep, settings: SettingsDep, actor: ActorDep
) -> CredentialPublic:
    """One issued credential with its revocation state."""
    row = repository.credential_by_uuid(session, credential_id)
    if row is None:
        raise NotFound("no such credential")
    return public_credential(row, settings)
