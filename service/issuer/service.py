"""Issuer use cases: issue, revoke, unrevoke, publish status lists, verify.

Functions ``add`` and ``flush`` but never commit: the route, CLI command or flow that
calls them commits once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import secrets
import uuid as uuidlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session

from service import audit
from service.db import engine as db_engine
from service.db.models import Credential, StatusList
from service.db.types import row_id
from service.errors import BadInput, Conflict, NotFound, ServiceError
from service.issuer import (
    baking,
    build,
    contexts,
    dataintegrity,
    identity,
    keys,
    repository,
    statuslist,
    vcjwt,
    verify,
)
from service.issuer.inputs import AwardInput, IssuerProfile
from service.issuer.types import VerificationReport
from service.settings import Settings

__all__ = [
    "Issued",
    "credential_url",
    "issue",
    "issue_held",
    "keyring",
    "profile",
    "profile_document",
    "repair_status_lists",
    "resolver",
    "revoke",
    "rotate_keys",
    "status_list_response",
    "unrevoke",
    "verify_input",
]

MAX_FILL = 0.5  # open a new list at half-full: random indexes stay cheap to find
POOL = 16  # free random indexes looked up at once


def profile(settings: Settings) -> IssuerProfile:
    """The awarding body from settings (``MICROCRED_ISSUER_*``)."""
    return IssuerProfile(
        name=settings.issuer_name,
        url=settings.issuer_url or settings.public_base_url,
        country_code=settings.issuer_country,
        region=settings.issuer_region or None,
        email=settings.issuer_email or None,
        description=settings.issuer_description or None,
        image_url=settings.issuer_image_url or None,
        other_identifiers=tuple(
            (ident, kind) for kind, ident in sorted(settings.issuer_other_identifiers.items())
        ),
    )


def keyring(session: Session, settings: Settings, *, create: bool = False) -> keys.Keyring:
    """The issuer keyring; ``create`` makes the first keys (needs a write session).

    ``create`` is for signing: it records the deployment's identity on first use and checks
    the settings against it (``identity.ensure``), so nothing is signed under another DID.

    Raises:
        identity.IdentityMismatch: ``create`` and the settings' base URL is not the
            recorded one.
    """
    if create:
        identity.ensure(session, settings)
        keys.ensure_keys(
            session, base_url=settings.public_base_url, jwt_algorithm=settings.issuer_jwt_algorithm
        )
    return keys.load_keyring(
        session, base_url=settings.public_base_url, jwt_algorithm=settings.issuer_jwt_algorithm
    )


def profile_document(settings: Settings) -> dict[str, Any]:
    """The OB 3.0 Profile served at ``/issuer`` (with the VC 2.0 + OB contexts)."""
    doc = build.issuer_profile(profile(settings), keys.did_web(settings.public_base_url))
    return {"@context": [contexts.VC_V2, contexts.OB_V3], **doc}


def credential_url(settings: Settings, uuid: str) -> str:
    """The public URL (and ``id``) of a credential."""
    return f"{settings.public_base_url}/credentials/{uuid}"


def _proved(
    doc: dict[str, Any], ring: keys.Keyring, *, base: str, now: dt.datetime
) -> dict[str, Any]:
    """``doc`` with an eddsa-rdfc-2022 proof by the ring's active key, created ``now``."""
    assert ring.signing_key is not None and ring.signing_key.private is not None
    return dataintegrity.sign(
        doc,
        key=ring.signing_key.private,
        verification_method=ring.verification_method(ring.signing_key),
        created=build.xsd_datetime(now),
        loader=contexts.loader_for(base),
    )


def _sign_list(
    status: StatusList, ring: keys.Keyring, settings: Settings, now: dt.datetime
) -> None:
    assert status.id is not None
    base = settings.public_base_url
    doc = statuslist.build_list_credential(
        url=statuslist.list_url(base, status.id),
        issuer_id=ring.did,
        bits=status.bits,
        valid_from=build.xsd_datetime(now),
        purpose=status.purpose,
    )
    status.document = _proved(doc, ring, base=base, now=now)
    status.version += 1
    status.updated_at = now


def _allocate(
    session: Session, ring: keys.Keyring, settings: Settings, now: dt.datetime
) -> tuple[StatusList, int]:
    # The open list is read once per transaction and not locked: issuers in parallel
    # transactions (workers) share it, and the unique (list, index) key keeps their entries
    # apart (a clash fails one transaction, which is retried). ``pending`` counts this
    # transaction's entries per list, added to the lists' ``allocated`` at its commit;
    # ``pool`` holds free random indexes found for this transaction, POOL at a time (one
    # query, not one per credential), and ``used`` those it gave out.
    cache = db_engine.transaction_cache(session, "status_list")
    pending = cache.get("pending")
    if pending is None:
        pending = cache["pending"] = {}
        _count_at_commit(session)
    held = cache.get("open")
    if held is None:
        found = repository.open_status_list(
            session, purpose="revocation", max_fill=MAX_FILL, pending=pending
        )
        if found is None:
            status = StatusList(
                purpose="revocation",
                size=settings.status_list_size,
                bits=statuslist.empty(settings.status_list_size),
                created_at=now,
            )
            session.add(status)
            session.flush()
            _sign_list(status, ring, settings, now)
            held = [status, 0, [], set()]
        else:
            held = [*found, [], set()]
        cache["open"] = held
    status, taken, pool, used = held
    assert status.id is not None
    # Random unused index (vc-bitstring-status-list §6.1): uniform candidates, the taken
    # ones dropped. The list is at most half full, so 64 candidates all taken has
    # probability below 2^-64.
    for _ in range(64 // POOL):
        if not pool:
            candidates = {statuslist.random_index(status.size) for _ in range(POOL)} - used
            pool += repository.free_indexes(session, status.id, sorted(candidates))
            secrets.SystemRandom().shuffle(pool)
        if pool:
            index: int = pool.pop()
            used.add(index)  # given out here, maybe not flushed yet
            pending[status.id] = pending.get(status.id, 0) + 1
            held[1] = taken + 1
            if held[1] >= status.size * MAX_FILL:
                cache.pop("open")  # full: the next credential looks again
            return status, index
    raise Conflict("no free status list index found; try again")


_COUNTING = "microcred.status_list_counting"


def _count_at_commit(session: Session) -> None:
    """Add a transaction's status entries to their lists' ``allocated`` when it commits
    (once per session: the listener reads the committing transaction's own count). Last,
    so the list rows are locked only for the commit itself, not while a batch signs: the
    workers share the open list. A rollback drops the count with the credentials."""
    if session.info.get(_COUNTING):
        return
    session.info[_COUNTING] = True
    event.listen(session, "before_commit", _add_pending)


def _add_pending(session: Session) -> None:
    pending = db_engine.transaction_cache(session, "status_list").get("pending")
    if pending:
        repository.add_allocated(session, pending)
        pending.clear()


def _transaction_keyring(session: Session, settings: Settings) -> keys.Keyring:
    """The issuer keyring, read once per transaction: a worker's batch signs many
    credentials with the same keys."""
    cache = db_engine.transaction_cache(session, "issuer_keyring")
    ring = cache.get(settings.public_base_url)
    if ring is None:
        ring = cache[settings.public_base_url] = keyring(session, settings, create=True)
    return ring


def _signed(
    doc: dict[str, Any], ring: keys.Keyring, *, base: str, now: dt.datetime
) -> dict[str, Any]:
    """``doc`` with its eddsa-rdfc-2022 proof, checked against the OB 3.0 schema.

    Raises:
        BadInput: the signed credential does not validate.
    """
    signed = _proved(doc, ring, base=base, now=now)
    schema = verify._check_schema(signed)
    if not schema.ok:
        raise BadInput(f"the credential would not be valid: {schema.detail}")
    return signed


@dataclasses.dataclass(frozen=True)
class Issued:
    """A credential issued inside a worker's batch (``issue_held``): what its award and
    deliveries need; its row is written with the batch's other rows."""

    uuid: str
    kind: str
    issued_at: dt.datetime
    valid_until: dt.datetime | None


def issue(
    session: Session,
    *,
    settings: Settings,
    award: AwardInput,
    now: dt.datetime,
    actor: str,
    parts: Sequence[Mapping[str, Any]] = (),
    audit_scope: audit.Scope | None = None,
) -> Credential:
    """Build, sign (eddsa-rdfc-2022, then VC-JWT) and record one credential.

    Args:
        session: a write session; the caller commits.
        settings: deployment settings (base URL, issuer profile, JWT algorithm).
        award: what to issue.
        now: the issue time (validFrom and the proof's created).
        actor: who issues, for the audit log ("api-token:3", "system", ...).
        parts: signed part credentials, for a stacked credential.
        audit_scope: the tenant of the audit row (the course it is awarded in), when the
            caller knows it.

    Returns:
        The stored credential row.

    Raises:
        BadInput: the award cannot be expressed (unknown level, undefined JSON-LD term,
            schema violation).
    """
    values, signed = _signed_values(session, settings=settings, award=award, now=now, parts=parts)
    row = Credential(**values)
    session.add(row)
    session.flush()
    set_committed_value(row, "document", signed)  # readers of the row get the dict
    _audit_issued(session, values, award=award, actor=actor, audit_scope=audit_scope)
    return row


def issue_held(
    session: Session,
    *,
    settings: Settings,
    award: AwardInput,
    now: dt.datetime,
    actor: str,
    audit_scope: audit.Scope | None = None,
) -> Issued:
    """``issue`` inside a worker's batch (``db.engine.batched_adds``): the same credential,
    its row held as plain values and written with the batch's other rows (one INSERT per
    batch, no model instance, no flush per credential)."""
    values, _ = _signed_values(session, settings=settings, award=award, now=now, parts=())
    db_engine.add_values(session, Credential, values)
    _audit_issued(session, values, award=award, actor=actor, audit_scope=audit_scope)
    return Issued(values["uuid"], values["kind"], values["issued_at"], values["valid_until"])


def _signed_values(
    session: Session,
    *,
    settings: Settings,
    award: AwardInput,
    now: dt.datetime,
    parts: Sequence[Mapping[str, Any]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A new credential signed (its status entry allocated): its row's columns and the
    signed document."""
    ring = _transaction_keyring(session, settings)
    assert ring.signing_key is not None and ring.jwt_signing_key is not None
    status, index = _allocate(session, ring, settings, now)
    assert status.id is not None
    cred_uuid = str(uuidlib.uuid4())
    base = settings.public_base_url
    common: dict[str, Any] = {
        "credential_id": credential_url(settings, cred_uuid),
        "award": award,
        "issuer": profile(settings),
        "issuer_id": ring.did,
        "base_url": base,
        "valid_from": now,
        "salt": secrets.token_hex(16),
        "status": statuslist.entry(statuslist.list_url(base, status.id), index),
    }
    doc = build.build_credential(**common, parts=parts)
    signed = _signed(doc, ring, base=base, now=now)
    # Serialised once: the stored document and the VC-JWT's payload are the same bytes.
    body = orjson.dumps(signed)
    valid_until = signed.get("validUntil")
    values = {  # the row's columns
        "uuid": cred_uuid,
        "person_id": award.learner.person_id,
        "lti_user_id": award.learner.lti_user_id,
        "template_key": award.template.key,
        "level_key": award.level_key,
        "achievement_id": signed["credentialSubject"]["achievement"]["id"],
        "kind": "stacked" if parts else "single",
        # the serialised bytes, written as they are (db.engine.json_text)
        "document": orjson.Fragment(body),
        "jwt": vcjwt.encode(signed, ring.jwt_signing_key, serialized=body),
        "signing_key_id": ring.signing_key.row_id,
        "jwt_key_id": ring.jwt_key_row.get(ring.jwt_signing_key.kid),
        "status_list_id": status.id,
        "status_index": index,
        "issued_at": now,
        "valid_from": now,
        "valid_until": (
            dt.datetime.fromisoformat(valid_until.replace("Z", "+00:00")) if valid_until else None
        ),
        "revoked": False,
        "revoked_at": None,
        "revocation_reason": None,
    }
    return values, signed


def _audit_issued(
    session: Session,
    values: dict[str, Any],
    *,
    award: AwardInput,
    actor: str,
    audit_scope: audit.Scope | None,
) -> None:
    audit.record(
        session,
        audit_scope,
        actor=actor,
        action="credential.issued",
        subject=f"credential:{values['uuid']}",
        template=award.template.key,
        level=award.level_key,
        status_list=values["status_list_id"],
        kind=values["kind"],
    )


def _set_revoked(
    session: Session,
    *,
    settings: Settings,
    uuid: str,
    revoked: bool,
    reason: str,
    actor: str,
    now: dt.datetime,
    again: bool = False,
) -> Credential:
    reason = reason.strip()
    if not reason:
        raise BadInput("a reason is required", hint="Say why, e.g. 'awarded in error'.")
    ring = keyring(session, settings, create=True)  # checks the identity first
    row = repository.credential_by_uuid(session, uuid, for_update=True)
    if row is None:
        raise NotFound(f"no credential {uuid}")
    if row.revoked == revoked and not again:
        state = "revoked" if revoked else "not revoked"
        raise Conflict(f"credential {uuid} is already {state}")
    if row.revoked != revoked:
        status = repository.status_list(session, row.status_list_id, for_update=True)
        assert status is not None
        status.bits = statuslist.set_bit(status.bits, row.status_index, revoked)
        _sign_list(status, ring, settings, now)
        session.add(status)
        row.revoked, row.revoked_at = revoked, now if revoked else None
    row.revocation_reason = reason if revoked else None
    session.add(row)
    audit.record(
        session,
        actor=actor,
        action="credential.revoked" if revoked else "credential.unrevoked",
        subject=f"credential:{uuid}",
        reason=reason,
        status_list=row.status_list_id,
        status_index=row.status_index,
    )
    session.flush()
    return row


def revoke(
    session: Session,
    *,
    settings: Settings,
    uuid: str,
    reason: str,
    actor: str,
    now: dt.datetime,
    again: bool = False,
) -> Credential:
    """Set the credential's revocation bit and re-sign its status list (audited); ``again``:
    one revoked already (else a Conflict) takes the reason, its bit and list unchanged."""
    return _set_revoked(
        session,
        settings=settings,
        uuid=uuid,
        revoked=True,
        reason=reason,
        actor=actor,
        now=now,
        again=again,
    )


def unrevoke(
    session: Session, *, settings: Settings, uuid: str, reason: str, actor: str, now: dt.datetime
) -> Credential:
    """Clear the revocation bit (to undo a mistake; audited with the reason).

    The Bitstring Status List spec calls revocation final; undoing one is an
    administrative correction, so verifiers that cached the list may still see it revoked
    until the list's ``ttl`` passes.
    """
    return _set_revoked(
        session, settings=settings, uuid=uuid, revoked=False, reason=reason, actor=actor, now=now
    )


def repair_status_lists(
    session: Session, *, settings: Settings, now: dt.datetime, actor: str
) -> list[int]:
    """Re-sign, bits unchanged, the status lists signed under another URL than the
    recorded identity (a process run with another ``MICROCRED_BASE_URL`` before the identity
    was recorded): verifiers reject every credential on such a list. Audited.

    Returns:
        The ids of the lists re-signed.

    Raises:
        identity.IdentityMismatch: the settings' base URL is not the recorded one.
    """
    ring = keyring(session, settings, create=True)
    repaired = []
    for status in repository.status_lists(session, for_update=True):
        assert status.id is not None
        doc = status.document or {}
        url = statuslist.list_url(settings.public_base_url, status.id)
        if doc.get("issuer") == ring.did and doc.get("id") == url:
            continue
        _sign_list(status, ring, settings, now)
        session.add(status)
        repaired.append(status.id)
        audit.record(
            session,
            actor=actor,
            action="status_list.resigned",
            subject=f"status_list:{status.id}",
            was_issuer=doc.get("issuer"),
            issuer=ring.did,
        )
    session.flush()
    return repaired


def rotate_keys(session: Session, *, settings: Settings, now: dt.datetime, actor: str) -> list[str]:
    """Retire the active issuer keys from signing and create new ones (audited).

    Raises:
        identity.IdentityMismatch: the settings' base URL is not the recorded one.
    """
    identity.ensure(session, settings)
    algorithms = ("Ed25519", settings.issuer_jwt_algorithm)
    new = keys.rotate(session, base_url=settings.public_base_url, algorithms=algorithms, now=now)
    audit.record(
        session,
        actor=actor,
        action="issuer.keys_rotated",
        subject="issuer",
        new_keys=[k.kid for k in new],
    )
    return [k.kid for k in new]


def status_list_response(session: Session, list_id: int) -> tuple[dict[str, Any], str]:
    """The signed status list credential and its ETag."""
    status = repository.status_list(session, list_id)
    if status is None or status.document is None:
        raise NotFound(f"no status list {list_id}")
    body = json.dumps(status.document, sort_keys=True).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return status.document, etag


def resolver(
    session: Session,
    settings: Settings,
    *,
    fetch: verify.Fetch | None = None,
    hasher: verify.RemoteHasher | None = None,
) -> verify.Resolver:
    """A verification resolver: this deployment offline, others via ``fetch`` if given."""
    ring = keyring(session, settings)
    prefix = settings.public_base_url + "/status/"

    def local_list(url: str) -> Mapping[str, Any] | None:
        list_id = row_id(url[len(prefix) :]) if url.startswith(prefix) else None
        if list_id is None:
            return None
        status = repository.status_list(session, list_id)
        return status.document if status is not None else None

    checked = None
    if fetch is not None:
        network = fetch

        def checked(url: str) -> Any:
            # A failed fetch is a failed check in the report, not an aborted verification.
            try:
                return network(url)
            except ServiceError as exc:
                raise LookupError(exc.detail) from None

    return verify.Resolver(keyring=ring, status_list=local_list, fetch=checked, hasher=hasher)


def _looks_like_image(data: bytes) -> bool:
    head = data[:2048].lstrip().lower()
    return data.startswith(baking.PNG_SIGNATURE) or head.startswith((b"<?xml", b"<svg"))


def verify_input(
    session: Session,
    settings: Settings,
    data: str | bytes | Mapping[str, Any],
    *,
    now: dt.datetime,
    fetch: verify.Fetch | None = None,
    hasher: verify.RemoteHasher | None = None,
) -> VerificationReport:
    """Verify a credential against this deployment (and others only through ``fetch``;
    canonicalisation through ``hasher`` when given).

    ``data`` may be a baked badge image (PNG or SVG bytes): the credential it carries is
    verified (Open Badges 3.0 §5.3, baking).

    Raises:
        BadInput: an image that carries no credential, or whose credential is unreadable.
    """
    if isinstance(data, bytes) and _looks_like_image(data):
        baked = baking.unbake(data)
        if baked is None:
            raise BadInput(
                "the image carries no credential (it is not a baked badge)",
                hint="Download the badge image from the learner's page (it is baked), or "
                "verify the credential's JSON or VC-JWT.",
            )
        data = baked.text
    return verify.verify(
        data,
        resolver=resolver(session, settings, fetch=fetch, hasher=hasher),
        now=now,
        clock_skew=dt.timedelta(seconds=settings.clock_skew_seconds),
    )
