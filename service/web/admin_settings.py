"""The administrator's settings pages: the platform and deployment, the repositories
credentials are delivered to (with a connection test run by the worker), the institution's
level thresholds and bounds, and the signing keys.

Same access as ``service.web.admin``: an institution or system Administrator of the
launch's platform (``auth.AdminDep``). Every change is a form with the CSRF token, is
audit-logged under the session's tenant, and answers in words. What is institution-wide
(repositories, thresholds) is said so on the page. Activating a platform and rotating keys
stay on the server's command line (with who ran them in the audit log); the pages say how.
Secrets are write-only: a form takes a new one, no page shows one back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session, col, func, select
from starlette.concurrency import run_in_threadpool

from service import evaluation
from service.db.models import Course, Deployment, IssuerKey, Platform, ToolKey
from service.db.types import utcnow
from service.delivery import checks, providers, repositories
from service.delivery.types import Provider
from service.deps import SessionDep, SettingsDep, WriteSessionDep
from service.errors import BadInput, NotFound, ServiceError
from service.policies import institution
from service.policies import repository as policies_repo
from service.policies import service as policies
from service.web import auth
from service.web.admin import audited
from service.web.appshell import page, submit

__all__ = ["router"]

router = APIRouter(tags=["admin"], include_in_schema=False)


def _page(
    request: Request,
    session: Session,
    user: auth.CurrentUser,
    template: str,
    error: ServiceError | None = None,
    **context: Any,
) -> HTMLResponse:
    """A settings page; with ``error`` (a form that failed), under its status."""
    status = error.status_code if error is not None else 200
    return page(
        request, session, user, template, tab="admin", status_code=status, error=error, **context
    )


# --- platform and deployment -----------------------------------------------------------------


def _platform_view(s: Session, user: auth.CurrentUser) -> dict[str, Any]:
    deployment = s.get(Deployment, user.deployment_id)
    courses = s.exec(
        select(func.count()).select_from(Course).where(Course.deployment_id == user.deployment_id)
    ).one()
    return {"deployment": deployment, "course_count": courses}


@router.get("/app/admin/platform")
def platform_page(request: Request, session: SessionDep, user: auth.AdminDep) -> HTMLResponse:
    """This platform's registration and this deployment, and its display name."""
    return _platform_page(request, session, user)


def _platform_page(
    request: Request, session: Session, user: auth.CurrentUser, error: ServiceError | None = None
) -> HTMLResponse:
    view = _platform_view(session, user)
    return _page(request, session, user, "app/admin_platform.html", error, **view)


@router.post("/app/admin/platform-name")
def rename_platform(
    request: Request,
    session: WriteSessionDep,
    user: auth.AdminDep,
    name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Change the name people see for this platform (nothing an LMS relies on)."""

    def work() -> None:
        text = " ".join(name.split())
        if not text:
            raise BadInput("name: give the name people know this LMS by, e.g. “Moodle of X”")
        platform = session.get(Platform, user.platform_id)
        if platform is None:
            raise NotFound("this session's platform is gone")
        before, platform.name = platform.name, text
        session.add(platform)
        audited(
            session, user, "platform.renamed", f"platform:{platform.id}", before=before, after=text
        )

    return submit(
        session,
        user,
        work,
        to="/app/admin/platform",
        done="platform_renamed",
        failed=lambda exc: _platform_page(request, session, user, exc),
    )


# --- repositories ----------------------------------------------------------------------------


def _addable() -> list[Provider]:
    """The kinds the add form offers, in the order it offers them."""
    return sorted((p for p in providers.registered() if p.addable), key=lambda p: p.rank)


def _repositories_view(s: Session) -> dict[str, Any]:
    repos = list(repositories.list_all(s))
    tests = checks.latest(s, [r.id for r in repos if r.id is not None])
    warnings = {w.repository_id: w.message for w in repositories.token_warnings(s)}
    competencies = {c.key: c.name for c in policies_repo.competencies(s)}
    platforms = {f"platform:{p.id}": p.name or p.issuer for p in s.exec(select(Platform))}
    pauses = {
        rid: [(platforms.get(p.scope, p.scope), p) for p in found]
        for rid, found in repositories.scoped_pauses(s).items()
    }
    return {
        "repositories": repos,
        "pauses": pauses,
        "tests": tests,
        "warnings": warnings,
        "kinds": {p.kind: p for p in providers.registered()},
        "addable": _addable(),
        "competencies": competencies,
        "now": utcnow(),
        # the page reloads itself while a test waits for the worker
        "refresh": any(t.status != "done" for t in tests.values()),
    }


def _repositories_page(
    request: Request,
    session: Session,
    user: auth.CurrentUser,
    *,
    error: ServiceError | None = None,
    typed: dict[str, str] | None = None,
) -> HTMLResponse:
    view = _repositories_view(session) | {"typed": typed or {}}
    return _page(request, session, user, "app/admin_repositories.html", error, **view)


@router.get("/app/admin/repositories")
def repositories_page(request: Request, session: SessionDep, user: auth.AdminDep) -> HTMLResponse:
    """Where credentials are delivered: add, change, test the connection."""
    return _repositories_page(request, session, user)


def _submit_repository(
    request: Request,
    session: Session,
    user: auth.CurrentUser,
    work: Callable[[], None],
    done: str,
    typed: dict[str, str] | None = None,
) -> Response:
    """A form post of the repositories page (``appshell.submit``)."""
    return submit(
        session,
        user,
        work,
        to="/app/admin/repositories",
        done=done,
        failed=lambda exc: _repositories_page(request, session, user, error=exc, typed=typed),
    )


def _template_map(text: str) -> dict[str, str]:
    """``COMPETENCY:LEVEL = TEMPLATE_ID`` lines (blank lines skipped)."""
    mapping: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise BadInput(
                f"templates, line {number}: {line!r} must look like "
                "data-investigation:advanced = TEMPLATE_ID"
            )
        if key.strip() in mapping:
            raise BadInput(f"templates, line {number}: {key.strip()!r} is given twice")
        mapping[key.strip()] = value.strip()
    return mapping


@router.post("/app/admin/repositories")
async def add_repository(
    request: Request,
    session: WriteSessionDep,
    user: auth.AdminDep,
    kind: Annotated[str, Form(max_length=20)],
    name: Annotated[str, Form(max_length=200)] = "",
    base_url: Annotated[str, Form(max_length=500)] = "",
    secret: Annotated[str, Form(max_length=4000)] = "",
    templates: Annotated[str, Form(max_length=20000)] = "",
    consent: Annotated[str, Form(max_length=20)] = "automatic",
) -> Response:
    """Add a repository (institution-wide); the secret is stored encrypted, never shown.
    Besides these fields, the form has each kind's settings (``Provider.settings``)."""
    form = await request.form()
    # what the administrator typed comes back on an error; the secret never does
    typed = {"kind": kind, "name": name, "base_url": base_url}
    typed |= {"templates": templates, "consent": consent}
    for setting in (s for p in _addable() for s in p.settings if s.on_page):
        value = form.get(setting.key)
        typed[setting.key] = value if isinstance(value, str) else ""

    def work() -> None:
        provider = next((p for p in _addable() if p.kind == kind), None)
        if provider is None:
            raise BadInput(f"kind: choose one of {', '.join(p.title for p in _addable())}")
        if not name.strip():
            raise BadInput("name: give the name administrators and learners will see")
        config: dict[str, Any] = {"base_url": base_url.strip()} if base_url.strip() else {}
        for setting in (s for s in provider.settings if s.on_page):
            value = typed[setting.key].strip()
            if len(value) > setting.maxlength:
                raise BadInput(f"{setting.key}: at most {setting.maxlength} characters")
            config[setting.key] = value or setting.default
        mapping = _template_map(templates)
        if mapping:
            config[provider.map_key or "templates"] = mapping
        if provider.secret and not secret:
            raise BadInput(f"secret: give the {provider.secret.missing}")
        repo = repositories.create(
            session,
            kind=kind,
            name=name.strip(),
            config=config,
            secret=secret if provider.secret else None,
            consent_policy=consent,
            now=utcnow(),
        )
        audited(session, user, "repository.added", f"repository:{repo.uuid}", kind=kind)

    return await run_in_threadpool(
        _submit_repository, request, session, user, work, "repository_added", typed
    )


@router.post("/app/admin/repositories/{ref}")
def change_repository(
    request: Request,
    ref: str,
    session: WriteSessionDep,
    user: auth.AdminDep,
    templates: Annotated[str, Form(max_length=20000)] = "",
    secret: Annotated[str, Form(max_length=4000)] = "",
    consent: Annotated[str, Form(max_length=20)] = "",
    enabled: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    """Change a repository: template map entries, a new secret, consent, on or off."""

    def work() -> None:
        mapping = _template_map(templates)
        repo = repositories.update(
            session,
            ref,
            templates=mapping or None,
            secret=secret or None,
            consent_policy=consent or None,
            enabled=enabled == "on",
            now=utcnow(),
        )
        given = (("templates", mapping), ("secret", secret), ("consent", consent))
        audited(
            session,
            user,
            "repository.changed",
            f"repository:{repo.uuid}",
            changed=[what for what, value in given if value],
            enabled=repo.enabled,
        )

    return _submit_repository(request, session, user, work, "repository_saved")


@router.post("/app/admin/repositories/{ref}/test")
def test_repository(
    request: Request, ref: str, session: WriteSessionDep, user: auth.AdminDep
) -> Response:
    """Queue a connection test for the worker (this request never calls the repository)."""

    def work() -> None:
        repo = repositories.get(session, ref)
        checks.request(session, repository_id=repo.id or 0, actor=user.actor, now=utcnow())
        audited(session, user, "repository.test_requested", f"repository:{repo.uuid}")

    return _submit_repository(request, session, user, work, "test_queued")


# --- institution thresholds and bounds -------------------------------------------------------


def _thresholds_page(
    request: Request,
    session: Session,
    user: auth.CurrentUser,
    *,
    typed: list[institution.LevelForm] | None = None,
    error: ServiceError | None = None,
) -> HTMLResponse:
    row, levels = institution.form(session)
    if typed is not None:  # what was typed, with the read-only column of the stored version
        words = {lv.key: lv.verification for lv in levels}
        typed = [dataclasses.replace(t, verification=words.get(t.key, "")) for t in typed]
    return _page(
        request,
        session,
        user,
        "app/admin_thresholds.html",
        error,
        version=row,
        levels=typed or levels,
        conflicts=error.conflicts if isinstance(error, _Refused) else [],
        sittings=institution.SITTINGS,
    )


@router.get("/app/admin/thresholds")
def thresholds_page(request: Request, session: SessionDep, user: auth.AdminDep) -> HTMLResponse:
    """The institution's level thresholds and the range instructors may set."""
    return _thresholds_page(request, session, user)


@router.post("/app/admin/thresholds")
async def save_thresholds(
    request: Request, session: WriteSessionDep, user: auth.AdminDep
) -> Response:
    """Check new thresholds and bounds against every course that uses them; save if none
    breaks, else name each course and field and save nothing."""
    form = await request.form()

    def text(name: str) -> str:
        value = form.get(name)
        return value[:20] if isinstance(value, str) else ""

    typed = [
        institution.LevelForm(
            key=lv.key,
            label=lv.label,
            threshold=text(f"threshold_{lv.key}"),
            low=text(f"min_{lv.key}"),
            high=text(f"max_{lv.key}"),
            least=text(f"least_{lv.key}"),
        )
        for lv in institution.LEVELS
    ]
    note = form.get("note")
    note = note[:500] if isinstance(note, str) else ""

    def work() -> int:
        defaults, bounds = institution.edit(session, typed)
        found = institution.conflicts(session, defaults, bounds)
        if found:
            raise _Refused(found)
        row = policies.save_institution(
            session,
            defaults=defaults,
            bounds=bounds,
            author=user.actor,
            note=note or "administrator page",
        )
        audited(
            session, user, "policy.institution_changed", "policy:institution", version=row.version
        )
        # Courses that keep a default now have other rules: their learners are evaluated
        # again by the workers.
        return sum(
            evaluation.enqueue(
                session, course_id=c.id or 0, reason="institution thresholds changed"
            )
            for c in policies_repo.courses_with_rules(session)
        )

    return await run_in_threadpool(
        submit,
        session,
        user,
        work,
        to="/app/admin/thresholds",
        done="thresholds_saved",
        failed=lambda exc: _thresholds_page(request, session, user, typed=typed, error=exc),
    )


class _Refused(BadInput):
    """New thresholds that would break the rules of ``conflicts``: nothing is saved."""

    def __init__(self, conflicts: list[policies.CourseConflict]) -> None:
        n = len(conflicts)
        super().__init__(
            f"these thresholds would break the rules of {n} course competenc"
            + ("y" if n == 1 else "ies"),
            code="policy_conflict",
            hint="Nothing was saved. Widen the range, or ask the instructors listed "
            "below to move their thresholds first.",
        )
        self.conflicts = conflicts


# --- keys ------------------------------------------------------------------------------------


@router.get("/app/admin/keys")
def keys_page(
    request: Request, session: SessionDep, settings: SettingsDep, user: auth.AdminDep
) -> HTMLResponse:
    """The issuer's signing keys and the tool's LTI keys, and how each is rotated."""
    issuer_keys = session.exec(
        select(IssuerKey).order_by(col(IssuerKey.active).desc(), col(IssuerKey.id).desc())
    ).all()
    return _page(
        request,
        session,
        user,
        "app/admin_keys.html",
        issuer_keys=issuer_keys,
        tool_keys=session.exec(select(ToolKey).order_by(col(ToolKey.id).desc())).all(),
        grace_days=settings.key_rotation_grace_days,
        base_url=settings.public_base_url,
    )
