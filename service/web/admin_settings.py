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

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session, col, func, select
from starlette.concurrency import run_in_threadpool

from service import audit, evaluation
from service.db.engine import session as db_session
from service.db.models import Course, Deployment, IssuerKey, Platform, ToolKey
from service.db.types import utcnow
from service.delivery import checks, providers, repositories
from service.deps import EngineDep, SettingsDep
from service.errors import BadInput, NotFound, ServiceError
from service.policies import institution
from service.policies import repository as policies_repo
from service.policies import service as policies
from service.web import auth
from service.web.appshell import back, page

__all__ = ["router"]

router = APIRouter(tags=["admin"], include_in_schema=False)

KIND_NAMES = {
    "credly": "Credly",
    "badgr": "Canvas Credentials (Badgr)",
    "webhook": "Webhook",
    "ags": "LMS gradebook",
}
# What the add form offers (the LMS gradebook target is wired by the server).
ADDABLE = ("credly", "badgr", "webhook")


def _scope(user: auth.CurrentUser) -> audit.Scope:
    return audit.Scope(deployment_id=user.deployment_id, platform_id=user.platform_id)


def _actor(user: auth.CurrentUser) -> str:
    return f"person:{user.person_id}"


# --- platform and deployment -----------------------------------------------------------------


def _platform_view(s: Session, user: auth.CurrentUser) -> dict[str, Any]:
    deployment = s.get(Deployment, user.deployment_id)
    courses = s.exec(
        select(func.count()).select_from(Course).where(Course.deployment_id == user.deployment_id)
    ).one()
    return {"deployment": deployment, "course_count": courses}


@router.get("/app/admin/platform")
def platform_page(request: Request, engine: EngineDep, user: auth.AdminDep) -> HTMLResponse:
    """This platform's registration and this deployment, and its display name."""
    with db_session(engine) as s:
        view = _platform_view(s, user)
    return page(request, engine, user, "app/admin_platform.html", tab="admin", **view)


@router.post("/app/admin/platform-name")
def rename_platform(
    request: Request,
    engine: EngineDep,
    user: auth.AdminDep,
    name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Change the name people see for this platform (nothing an LMS relies on)."""
    try:
        text = " ".join(name.split())
        if not text:
            raise BadInput("name: give the name people know this LMS by, e.g. “Moodle of X”")
        with db_session(engine, write=True) as s:
            platform = s.get(Platform, user.platform_id)
            if platform is None:
                raise NotFound("this session's platform is gone")
            before = platform.name
            platform.name = text
            s.add(platform)
            audit.record(
                s,
                _scope(user),
                actor=_actor(user),
                action="platform.renamed",
                subject=f"platform:{platform.id}",
                before=before,
                after=text,
            )
            s.commit()
    except ServiceError as exc:
        with db_session(engine) as s:
            view = _platform_view(s, user)
        return page(
            request,
            engine,
            user,
            "app/admin_platform.html",
            tab="admin",
            status_code=exc.status_code,
            error=exc,
            **view,
        )
    return back(user, "/app/admin/platform", "platform_renamed")


# --- repositories ----------------------------------------------------------------------------


def _repositories_view(s: Session) -> dict[str, Any]:
    repos = list(repositories.list_all(s))
    tests = checks.latest(s, [r.id for r in repos if r.id is not None])
    warnings = {w.repository_id: w.message for w in repositories.token_warnings(s)}
    competencies = {c.key: c.name for c in policies_repo.competencies(s)}
    return {
        "repositories": repos,
        "tests": tests,
        "warnings": warnings,
        "kind_names": KIND_NAMES,
        "test_descriptions": {p.kind: p.test_description for p in providers.registered()},
        "addable": ADDABLE,
        "competencies": competencies,
        "now": utcnow(),
        # the page reloads itself while a test waits for the worker
        "refresh": any(t.status != "done" for t in tests.values()),
    }


def _repositories_page(
    request: Request,
    engine: Any,
    user: auth.CurrentUser,
    *,
    error: ServiceError | None = None,
    typed: dict[str, str] | None = None,
) -> HTMLResponse:
    with db_session(engine) as s:
        view = _repositories_view(s)
    return page(
        request,
        engine,
        user,
        "app/admin_repositories.html",
        tab="admin",
        status_code=error.status_code if error is not None else 200,
        error=error,
        typed=typed or {},
        **view,
    )


@router.get("/app/admin/repositories")
def repositories_page(request: Request, engine: EngineDep, user: auth.AdminDep) -> HTMLResponse:
    """Where credentials are delivered: add, change, test the connection."""
    return _repositories_page(request, engine, user)


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
def add_repository(
    request: Request,
    engine: EngineDep,
    user: auth.AdminDep,
    kind: Annotated[str, Form(max_length=20)],
    name: Annotated[str, Form(max_length=200)] = "",
    organization_id: Annotated[str, Form(max_length=200)] = "",
    environment: Annotated[str, Form(max_length=20)] = "",
    base_url: Annotated[str, Form(max_length=500)] = "",
    url: Annotated[str, Form(max_length=1000)] = "",
    username: Annotated[str, Form(max_length=300)] = "",
    secret: Annotated[str, Form(max_length=4000)] = "",
    templates: Annotated[str, Form(max_length=20000)] = "",
    consent: Annotated[str, Form(max_length=20)] = "automatic",
) -> Response:
    """Add a repository (institution-wide); the secret is stored encrypted, never shown."""
    # what the administrator typed comes back on an error; the secret never does
    typed = {
        "kind": kind,
        "name": name,
        "organization_id": organization_id,
        "environment": environment,
        "base_url": base_url,
        "url": url,
        "username": username,
        "templates": templates,
        "consent": consent,
    }
    try:
        if kind not in ADDABLE:
            raise BadInput(f"kind: choose one of {', '.join(KIND_NAMES[k] for k in ADDABLE)}")
        if not name.strip():
            raise BadInput("name: give the name administrators and learners will see")
        config: dict[str, Any] = {}
        if base_url.strip():
            config["base_url"] = base_url.strip()
        if kind == "credly":
            config |= {
                "organization_id": organization_id.strip(),
                "environment": environment or "sandbox",
            }
        elif kind == "badgr":
            config |= {"region": environment or "us", "username": username.strip()}
        else:
            config["url"] = url.strip()
        mapping = _template_map(templates)
        if mapping:
            config["badge_classes" if kind == "badgr" else "templates"] = mapping
        if not secret:
            raise BadInput(
                "secret: give the "
                + {"credly": "organisation's API token", "badgr": "account's password"}.get(
                    kind, "signing secret the receiver checks"
                )
            )
        with db_session(engine, write=True) as s:
            repo = repositories.create(
                s,
                kind=kind,
                name=name.strip(),
                config=config,
                secret=secret,
                consent_policy=consent,
                now=utcnow(),
            )
            audit.record(
                s,
                _scope(user),
                actor=_actor(user),
                action="repository.added",
                subject=f"repository:{repo.uuid}",
                kind=kind,
            )
            s.commit()
    except ServiceError as exc:
        return _repositories_page(request, engine, user, error=exc, typed=typed)
    return back(user, "/app/admin/repositories", "repository_added")


def _find(s: Session, ref: str) -> Any:
    try:
        return repositories.get(s, ref)
    except NotFound:
        raise NotFound(f"no repository {ref!r}") from None


@router.post("/app/admin/repositories/{ref}")
def change_repository(
    request: Request,
    ref: str,
    engine: EngineDep,
    user: auth.AdminDep,
    templates: Annotated[str, Form(max_length=20000)] = "",
    secret: Annotated[str, Form(max_length=4000)] = "",
    consent: Annotated[str, Form(max_length=20)] = "",
    enabled: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    """Change a repository: template map entries, a new secret, consent, on or off."""
    try:
        mapping = _template_map(templates)
        with db_session(engine, write=True) as s:
            repo = _find(s, ref)
            repo = repositories.update(
                s,
                repo.id,
                templates=mapping or None,
                secret=secret or None,
                consent_policy=consent or None,
                enabled=enabled == "on",
                now=utcnow(),
            )
            changed = [
                what
                for what, given in (
                    ("templates", mapping),
                    ("secret", secret),
                    ("consent", consent),
                )
                if given
            ]
            audit.record(
                s,
                _scope(user),
                actor=_actor(user),
                action="repository.changed",
                subject=f"repository:{repo.uuid}",
                changed=changed,
                enabled=repo.enabled,
            )
            s.commit()
    except ServiceError as exc:
        return _repositories_page(request, engine, user, error=exc)
    return back(user, "/app/admin/repositories", "repository_saved")


@router.post("/app/admin/repositories/{ref}/test")
def test_repository(request: Request, ref: str, engine: EngineDep, user: auth.AdminDep) -> Response:
    """Queue a connection test for the worker (this request never calls the repository)."""
    try:
        with db_session(engine, write=True) as s:
            repo = _find(s, ref)
            checks.request(s, repository_id=repo.id, actor=_actor(user), now=utcnow())
            audit.record(
                s,
                _scope(user),
                actor=_actor(user),
                action="repository.test_requested",
                subject=f"repository:{repo.uuid}",
            )
            s.commit()
    except ServiceError as exc:
        return _repositories_page(request, engine, user, error=exc)
    return back(user, "/app/admin/repositories", "test_queued")


# --- institution thresholds and bounds -------------------------------------------------------


def _thresholds_page(
    request: Request,
    engine: Any,
    user: auth.CurrentUser,
    *,
    typed: list[institution.LevelForm] | None = None,
    conflicts: list[policies.CourseConflict] | None = None,
    error: ServiceError | None = None,
) -> HTMLResponse:
    with db_session(engine) as s:
        row, levels = institution.form(s)
    return page(
        request,
        engine,
        user,
        "app/admin_thresholds.html",
        tab="admin",
        status_code=error.status_code if error is not None else 200,
        error=error,
        version=row,
        levels=typed or levels,
        conflicts=conflicts or [],
        sittings=institution.SITTINGS,
    )


@router.get("/app/admin/thresholds")
def thresholds_page(request: Request, engine: EngineDep, user: auth.AdminDep) -> HTMLResponse:
    """The institution's level thresholds and the range instructors may set."""
    return _thresholds_page(request, engine, user)


@router.post("/app/admin/thresholds")
async def save_thresholds(request: Request, engine: EngineDep, user: auth.AdminDep) -> Response:
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
    return await run_in_threadpool(
        _save_thresholds, request, engine, user, typed, note[:500] if isinstance(note, str) else ""
    )


def _save_thresholds(
    request: Request,
    engine: Any,
    user: auth.CurrentUser,
    typed: list[institution.LevelForm],
    note: str,
) -> Response:
    try:
        with db_session(engine, write=True) as s:
            defaults, bounds = institution.edit(s, typed)
            found = institution.conflicts(s, defaults, bounds)
            if found:
                raise _Refused(found)
            row = policies.save_institution(
                s,
                defaults=defaults,
                bounds=bounds,
                author=_actor(user),
                note=note or "administrator page",
            )
            audit.record(
                s,
                _scope(user),
                actor=_actor(user),
                action="policy.institution_changed",
                subject="policy:institution",
                version=row.version,
            )
            # Courses that keep a default now have other rules: their learners are
            # evaluated again by the workers.
            queued = sum(
                evaluation.enqueue(s, course_id=c.id or 0, reason="institution thresholds changed")
                for c in policies_repo.courses_with_rules(s)
            )
            s.commit()
    except _Refused as refused:
        return _thresholds_page(
            request,
            engine,
            user,
            typed=_with_verification(engine, typed),
            conflicts=refused.conflicts,
            error=BadInput(
                f"these thresholds would break the rules of {len(refused.conflicts)} "
                "course competenc" + ("y" if len(refused.conflicts) == 1 else "ies"),
                code="policy_conflict",
                hint="Nothing was saved. Widen the range, or ask the instructors listed "
                "below to move their thresholds first.",
            ),
        )
    except ServiceError as exc:
        return _thresholds_page(
            request, engine, user, typed=_with_verification(engine, typed), error=exc
        )
    return back(user, "/app/admin/thresholds", "thresholds_saved", n=queued)


class _Refused(Exception):
    def __init__(self, conflicts: list[policies.CourseConflict]) -> None:
        super().__init__("conflicts")
        self.conflicts = conflicts


def _with_verification(
    engine: Any, typed: list[institution.LevelForm]
) -> list[institution.LevelForm]:
    """The typed rows, with the read-only column of the stored version."""
    with db_session(engine) as s:
        _, stored = institution.form(s)
    words = {lv.key: lv.verification for lv in stored}
    return [
        institution.LevelForm(
            key=t.key,
            label=t.label,
            threshold=t.threshold,
            low=t.low,
            high=t.high,
            least=t.least,
            verification=words.get(t.key, ""),
        )
        for t in typed
    ]


# --- keys ------------------------------------------------------------------------------------


@router.get("/app/admin/keys")
def keys_page(
    request: Request, engine: EngineDep, settings: SettingsDep, user: auth.AdminDep
) -> HTMLResponse:
    """The issuer's signing keys and the tool's LTI keys, and how each is rotated."""
    with db_session(engine) as s:
        issuer_keys = s.exec(
            select(IssuerKey).order_by(col(IssuerKey.active).desc(), col(IssuerKey.id).desc())
        ).all()
        tool_keys = s.exec(select(ToolKey).order_by(col(ToolKey.id).desc())).all()
    return page(
        request,
        engine,
        user,
        "app/admin_keys.html",
        tab="admin",
        issuer_keys=issuer_keys,
        tool_keys=tool_keys,
        grace_days=settings.key_rotation_grace_days,
        base_url=settings.public_base_url,
    )
