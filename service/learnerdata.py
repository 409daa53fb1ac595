"""One learner's personal data: export everything held about them, erase it on request.

``export`` gathers every row that names the person (docs/operations.md "Personal data"
lists the tables, why each is kept and for how long). ``erase`` removes or pseudonymises
it while the credentials already issued stay verifiable and revocable:

- the person keeps their row id (awards and credentials point at it) but loses their LMS
  user id (replaced by ``erased:<random>``), name and e-mail;
- evidence and its revisions, verification statements, decisions, enrolments, web
  sessions (and a deep-linking session's launch data), LMS id links and e-mail mismatch
  records are deleted;
- deliveries that had not gone out are cancelled; the personal fields of every delivery
  row (e-mail, given and family name) and the learner's name and e-mail wherever they
  appear in attempts and audit rows are replaced by ``[erased]``;
- each credential row stays with its signed document: it is the record the learner holds
  and verifiers check, a signature cannot be kept over an edited document, and its status
  list entry is what makes it revocable. The public page stops showing the name; with
  ``revoke`` every credential is also revoked (and the revocation sent to the repositories).
- copies already delivered (Credly, Canvas Credentials, a webhook receiver, the LMS
  gradebook) are outside this database: ``held_elsewhere`` lists them with how to ask.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid as uuidlib
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, or_, update
from sqlmodel import Session, SQLModel, col, select

from service import audit
from service.db.engine import table
from service.db.models import (
    AuditEvent,
    Award,
    Course,
    Credential,
    Decision,
    DeliveryAttempt,
    DeliveryConsent,
    DeliveryRepository,
    EmailMismatch,
    Enrolment,
    Evidence,
    EvidenceRevision,
    LtiCache,
    OutboxMessage,
    Person,
    PersonLink,
    VerificationEvent,
    WebSession,
)
from service.delivery import providers
from service.errors import BadInput, NotFound
from service.flows import revoking
from service.issuer import service as issuer_service
from service.settings import Settings

__all__ = [
    "ERASED",
    "ErasureReport",
    "erase",
    "erased",
    "export",
    "find",
    "held_elsewhere",
]

ERASED = "[erased]"
_SUB_PREFIX = "erased:"
# Personal fields of outbox payloads (delivery/awards.py CredentialSnapshot), at any depth
# (a revocation carries its targets, an upgrade the badges it replaces).
_PAYLOAD_PERSONAL = frozenset({"recipient_email", "given_name", "family_name"})
# Deliveries not yet made: cancelled on erasure rather than sent with the learner's data.
_NOT_SENT = ("pending", "held")


def erased(person: Person) -> bool:
    """True once the person's data was erased (``erase``)."""
    return person.sub.startswith(_SUB_PREFIX)


def find(session: Session, *, email: str | None = None, sub: str | None = None) -> list[Person]:
    """People by e-mail (case-insensitive) or LMS user id (the LTI ``sub``), on any platform."""
    query = select(Person)
    if email is not None:
        query = query.where(col(Person.email).ilike(email.strip()))
    if sub is not None:
        query = query.where(Person.sub == sub)
    return list(session.exec(query.order_by(col(Person.id))))


def _person(session: Session, person_id: int) -> Person:
    person = session.get(Person, person_id)
    if person is None:
        raise NotFound(
            f"no person {person_id}",
            hint="Find the id with `microcred learner find --email ADDRESS` (or --sub LMS_ID).",
        )
    return person


def _all(session: Session, model: Any, where: Any) -> list[Any]:
    """The rows of ``model`` that ``where`` selects, oldest first."""
    return list(session.exec(select(model).where(where).order_by(col(model.id))))


def _row(obj: SQLModel, *, without: Iterable[str] = ()) -> dict[str, Any]:
    data = obj.model_dump(mode="json")
    for key in without:
        data.pop(key, None)
    return data


@dataclasses.dataclass
class _Scope:
    """The rows that belong to one person."""

    person: Person
    credentials: list[Credential]
    awards: list[Award]
    outbox: list[OutboxMessage]

    @property
    def credential_keys(self) -> set[str]:
        keys = {c.uuid for c in self.credentials}
        keys |= {a.delivery_key for a in self.awards if a.delivery_key}
        keys |= {a.credential_uuid for a in self.awards if a.credential_uuid}
        return keys


def _scope(session: Session, person: Person) -> _Scope:
    pid = person.id
    scope = _Scope(
        person,
        _all(session, Credential, Credential.person_id == pid),
        _all(session, Award, Award.person_id == pid),
        [],
    )
    keys = sorted(scope.credential_keys)
    outbox = or_(col(OutboxMessage.person_id) == pid, col(OutboxMessage.credential_id).in_(keys))
    scope.outbox = _all(session, OutboxMessage, outbox)
    return scope


def _audit_rows(session: Session, scope: _Scope) -> list[AuditEvent]:
    actor = f"person:{scope.person.id}"
    subjects = [actor] + [f"credential:{key}" for key in sorted(scope.credential_keys)]
    where = or_(col(AuditEvent.actor) == actor, col(AuditEvent.subject).in_(subjects))
    return _all(session, AuditEvent, where)


def _repositories(session: Session, rows: Iterable[OutboxMessage]) -> dict[int, DeliveryRepository]:
    ids = {r.repository_id for r in rows if r.repository_id is not None}
    if not ids:
        return {}
    found = session.exec(select(DeliveryRepository).where(col(DeliveryRepository.id).in_(ids)))
    return {r.id: r for r in found if r.id is not None}


def _how_to_ask(repo: DeliveryRepository, row: OutboxMessage) -> str:
    badge = row.result.get("badge_id") or row.result.get("entity_id") or row.result.get("id")
    ref = f" (its id there: {badge})" if badge else ""
    try:
        provider = providers.get(repo.kind)
    except BadInput:  # a kind no longer known
        return f"Ask the operator of {repo.name} to erase what it was sent{ref}."
    return provider.erasure(repo.config, repo.name, ref)


def held_elsewhere(session: Session, person_id: int) -> list[dict[str, Any]]:
    """Copies of the learner's data that deliveries placed outside this database."""
    scope = _scope(session, _person(session, person_id))
    repos = _repositories(session, scope.outbox)
    out = []
    for row in scope.outbox:
        repo = repos.get(row.repository_id or 0)
        if repo is None or row.status != "delivered" or row.kind.endswith("_revoked"):
            continue
        out.append(
            {
                "repository": repo.name,
                "kind": repo.kind,
                "credential_id": row.credential_id,
                "delivery": row.kind,
                "delivered_at": row.delivered_at.isoformat() if row.delivered_at else None,
                "how_to_ask": _how_to_ask(repo, row),
            }
        )
    return out


def _enrolments(session: Session, pid: int | None) -> list[dict[str, Any]]:
    """The person's enrolments, each with its course's title, label and context id."""
    query = (
        select(Enrolment, Course)
        .join(Course, col(Course.id) == Enrolment.course_id, isouter=True)
        .where(Enrolment.person_id == pid)
        .order_by(col(Enrolment.id))
    )
    return [
        _row(e)
        | {
            "course": {"title": c.title, "label": c.label, "context_id": c.context_id}
            if c
            else None
        }
        for e, c in session.exec(query)
    ]


def _attempts(session: Session, scope: _Scope) -> list[DeliveryAttempt]:
    outbox_ids = [r.id for r in scope.outbox]
    return _all(session, DeliveryAttempt, col(DeliveryAttempt.outbox_message_id).in_(outbox_ids))


def _deliveries(session: Session, scope: _Scope) -> list[dict[str, Any]]:
    """The person's outbox rows, each with its repository and attempts."""
    repos = _repositories(session, scope.outbox)
    by_row: dict[int, list[dict[str, Any]]] = {}
    for a in _attempts(session, scope):
        by_row.setdefault(a.outbox_message_id, []).append(_row(a, without=("outbox_message_id",)))
    return [
        _row(r, without=("lease_token",))
        | {
            "repository": (
                {"name": repos[r.repository_id].name, "kind": repos[r.repository_id].kind}
                if r.repository_id in repos
                else None
            ),
            "attempts": by_row.get(r.id or 0, []),
        }
        for r in scope.outbox
    ]


def export(
    session: Session, *, settings: Settings, person_id: int, now: dt.datetime
) -> dict[str, Any]:
    """Everything held about one person, as JSON-ready data (GDPR Art. 15 and 20)."""
    person = _person(session, person_id)
    scope = _scope(session, person)
    pid = person.id

    def each(model: Any, where: Any = None, *, without: Iterable[str] = ()) -> list[dict[str, Any]]:
        where = col(model.person_id) == pid if where is None else where
        return [_row(r, without=without) for r in _all(session, model, where)]

    evidence_ids = select(Evidence.id).where(Evidence.person_id == pid)
    return {
        "format": "microcred learner export 1",
        "exported_at": now.isoformat(),
        "issuer": settings.public_base_url,
        "person": _row(person) | {"erased": erased(person)},
        "enrolments": _enrolments(session, pid),
        "lms_user_ids": each(PersonLink),
        "evidence": each(Evidence),
        "evidence_revisions": each(
            EvidenceRevision, col(EvidenceRevision.evidence_id).in_(evidence_ids)
        ),
        "verification_events": each(VerificationEvent),
        "decisions": each(Decision),
        "awards": [_row(a) for a in scope.awards],
        "credentials": [
            _row(c, without=("jwt",))
            | {"url": issuer_service.credential_url(settings, c.uuid), "jwt": c.jwt}
            for c in scope.credentials
        ],
        "deliveries": _deliveries(session, scope),
        "delivery_consents": each(
            DeliveryConsent, col(DeliveryConsent.credential_id).in_(sorted(scope.credential_keys))
        ),
        "email_mismatches": each(EmailMismatch),
        # The session id is the hash of a secret token: when and how, not the id.
        "web_sessions": each(WebSession, without=("id", "launch_id")),
        "audit_events": [_row(e) for e in _audit_rows(session, scope)],
        "held_elsewhere": held_elsewhere(session, person_id),
    }


@dataclasses.dataclass
class ErasureReport:
    person_id: int
    deleted: dict[str, int]
    cancelled_deliveries: int
    revoked: list[str]
    credentials_kept: list[str]
    held_elsewhere: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _scrub(value: Any, words: list[str]) -> Any:
    """``value`` with the personal payload fields and every occurrence of ``words`` erased."""
    if isinstance(value, dict):
        return {
            k: (ERASED if k in _PAYLOAD_PERSONAL and v else _scrub(v, words))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_scrub(v, words) for v in value]
    if isinstance(value, str):
        for word in words:
            value = value.replace(word, ERASED)
        return value
    return value


def _scrub_deliveries(
    session: Session, scope: _Scope, words: list[str], *, now: dt.datetime
) -> int:
    """Cancel the person's deliveries not sent yet (revocations still go out) and scrub their
    name and e-mail from outbox rows, attempts and audit details; returns the cancelled."""
    cancelled = 0
    for row in scope.outbox:
        if row.status in _NOT_SENT and not row.kind.endswith("_revoked"):
            row.status, row.lease_token, row.lease_expires_at = "cancelled", None, None
            row.last_error = "cancelled: the learner's personal data was erased"
            cancelled += 1
        row.payload = _scrub(row.payload, words)
        row.result = _scrub(row.result, words)
        row.last_error = _scrub(row.last_error, words)
        row.updated_at = now
        session.add(row)
    for attempt in _attempts(session, scope):
        attempt.request_summary = _scrub(attempt.request_summary, words)
        attempt.response_excerpt = _scrub(attempt.response_excerpt, words)
        attempt.error_detail = _scrub(attempt.error_detail, words)
        session.add(attempt)
    for event in _audit_rows(session, scope):
        scrubbed = _scrub(event.detail, words)
        if scrubbed != event.detail:
            event.detail = scrubbed
            session.add(event)
    return cancelled


def _delete_personal_rows(session: Session, pid: int | None) -> dict[str, int]:
    """Delete the person's evidence, decisions, enrolments, sessions and links; rows deleted
    per table."""
    deleted: dict[str, int] = {}

    def gone(model: Any, where: Any) -> None:
        result: Any = session.execute(delete(model).where(where))
        deleted[table(model).name] = int(result.rowcount)

    session.execute(update(Award).where(col(Award.person_id) == pid).values(decision_id=None))
    evidence_ids = select(Evidence.id).where(Evidence.person_id == pid)
    gone(EvidenceRevision, col(EvidenceRevision.evidence_id).in_(evidence_ids))
    for model in (Evidence, VerificationEvent, Decision, Enrolment):
        gone(model, col(model.person_id) == pid)
    # a deep-linking session's launch (its claims: name, e-mail) is kept beside the session
    launches = [
        f"ctx-{lid}"
        for lid in session.exec(select(WebSession.launch_id).where(WebSession.person_id == pid))
        if lid
    ]
    gone(LtiCache, col(LtiCache.key).in_(launches))
    for person_model in (WebSession, PersonLink, EmailMismatch):
        gone(person_model, col(person_model.person_id) == pid)
    return deleted


def erase(
    session: Session,
    *,
    settings: Settings,
    person_id: int,
    actor: str,
    now: dt.datetime,
    revoke: bool = False,
    reason: str = "the learner asked for their personal data to be erased",
) -> ErasureReport:
    """Erase one person's personal data (GDPR Art. 17) in the caller's transaction; see the
    module docstring for what is removed and what stays. Running it again does nothing more."""
    person = _person(session, person_id)
    pid = person.id
    revoked: list[str] = []
    if revoke:
        for cred in _scope(session, person).credentials:
            if not cred.revoked:
                revoking.revoke_credential(
                    session, settings=settings, uuid=cred.uuid, reason=reason, actor=actor, now=now
                )
                revoked.append(cred.uuid)
        session.flush()
    scope = _scope(session, person)
    # The e-mail address and the full name, where text (an attempt's excerpt, an audit
    # detail) quotes them; not the parts of a name, nor the LMS id (often a small number),
    # which would erase the same letters or digits in unrelated text.
    words = sorted(
        {w for w in (person.email, person.email.lower(), person.name.strip()) if len(w) >= 3},
        key=len,
        reverse=True,
    )

    cancelled = _scrub_deliveries(session, scope, words, now=now)
    deleted = _delete_personal_rows(session, pid)

    for cred in scope.credentials:
        cred.lti_user_id = ""
        session.add(cred)
    was_erased = erased(person)
    if not was_erased:
        person.sub = _SUB_PREFIX + uuidlib.uuid4().hex
    person.name = person.given_name = person.family_name = person.email = ""
    person.updated_at = now
    session.add(person)
    audit.record(
        session,
        actor=actor,
        action="person.erased",
        subject=f"person:{pid}",
        again=was_erased,
        revoked=len(revoked),
        cancelled_deliveries=cancelled,
    )
    session.flush()
    return ErasureReport(
        person_id=person_id,
        deleted=deleted,
        cancelled_deliveries=cancelled,
        revoked=revoked,
        credentials_kept=[c.uuid for c in scope.credentials],
        held_elsewhere=held_elsewhere(session, person_id),
    )
