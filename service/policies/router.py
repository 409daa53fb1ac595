"""JSON API: the competency catalogue and versioned policies, under ``/api/policies``.

Authorization is not wired yet: administrator routes (institution defaults and bounds,
catalogue) and instructor routes (course overrides) are marked below; ``_author`` is where
the authenticated principal goes.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import PlainTextResponse, Response
from sqlmodel import Session

from service.db.models import Competency, CompetencyLevelTemplate, Course, PolicyVersion
from service.deps import RowId, SessionDep, WriteSessionDep
from service.errors import NotFound
from service.policies import files, schemas
from service.policies import repository as repo
from service.policies import service as policies

router = APIRouter(prefix="/api/policies", tags=["policies"])

FormatQuery = Annotated[str, Query(pattern="^(json|yaml)$", description="json or yaml")]
_T = TypeVar("_T")


def _author(request: Request) -> str:
    # Set by the router-level API-token dependency the app mounts this router with.
    return str(request.state.actor)


def _committed(session: Session, out: _T) -> _T:
    """``out``, read out of rows just stored, once the commit that keeps them is done."""
    session.commit()
    return out


def _version(row: PolicyVersion) -> schemas.PolicyVersionPublic:
    return schemas.PolicyVersionPublic.model_validate(row, from_attributes=True)


def _course(session: SessionDep, course_id: int) -> Course:
    row = session.get(Course, course_id)
    if row is None:
        raise NotFound(f"no course {course_id}")
    return row


def _competency_public(session: SessionDep, row: Competency) -> schemas.CompetencyPublic:
    assert row.id is not None
    out = schemas.CompetencyPublic.model_validate(row, from_attributes=True)
    out.levels = [_template(t) for t in repo.level_templates(session, row.id)]
    return out


def _template(row: CompetencyLevelTemplate) -> schemas.LevelTemplatePublic:
    return schemas.LevelTemplatePublic.model_validate(row, from_attributes=True)


def _dump(data: dict[str, Any], fmt: str) -> Response:
    media = "application/json" if fmt == "json" else "application/yaml"
    return PlainTextResponse(files.dump(data, fmt), media_type=media)


# --- catalogue (administrator) ------------------------------------------------------------


@router.get("/competencies")
def list_competencies(session: SessionDep) -> list[schemas.CompetencyPublic]:
    """The institution's competency catalogue."""
    return [_competency_public(session, row) for row in repo.competencies(session)]


@router.post("/competencies", status_code=201)
def create_competency(
    body: schemas.CompetencyCreate, request: Request, session: WriteSessionDep
) -> schemas.CompetencyPublic:
    """Add a competency to the catalogue (administrator)."""
    row = policies.create_competency(session, author=_author(request), **body.model_dump())
    return _committed(session, _competency_public(session, row))


@router.get("/competencies/{key:path}/levels")
def get_levels(key: str, session: SessionDep) -> list[schemas.LevelTemplatePublic]:
    """The credential fields of each level of a competency."""
    row = policies.competency(session, key)
    assert row.id is not None
    return [_template(t) for t in repo.level_templates(session, row.id)]


@router.put("/competencies/{key:path}/levels/{level}")
def put_level(
    key: str, level: str, body: schemas.LevelTemplateIn, request: Request, session: WriteSessionDep
) -> schemas.LevelTemplatePublic:
    """Set the credential fields of one level (administrator)."""
    row = policies.competency(session, key)
    template = policies.set_level_template(
        session, competency_row=row, level=level, author=_author(request), **body.model_dump()
    )
    return _committed(session, _template(template))


@router.get("/competencies/{key:path}")
def get_competency(key: str, session: SessionDep) -> schemas.CompetencyPublic:
    """One competency with its level templates."""
    return _competency_public(session, policies.competency(session, key))


@router.patch("/competencies/{key:path}")
def update_competency(
    key: str, body: schemas.CompetencyUpdate, request: Request, session: WriteSessionDep
) -> schemas.CompetencyPublic:
    """Change a competency (administrator)."""
    fields = body.model_dump(exclude_none=True)
    row = policies.update_competency(session, key=key, author=_author(request), **fields)
    return _committed(session, _competency_public(session, row))


# --- institution defaults and bounds (administrator) ------------------------------------


@router.get("/institution")
def get_institution(session: SessionDep) -> schemas.PolicyVersionPublic:
    """The current institution defaults and bounds."""
    row, _, _ = policies.institution_layers(session)
    return _version(row)


@router.put("/institution")
def put_institution(
    body: schemas.InstitutionPolicyIn, request: Request, session: WriteSessionDep
) -> schemas.PolicyVersionPublic:
    """Store new institution defaults and bounds as the next version (administrator)."""
    row = policies.save_institution(
        session, defaults=body.defaults, bounds=body.bounds, author=_author(request), note=body.note
    )
    return _committed(session, _version(row))


@router.get("/institution/versions")
def institution_versions(session: SessionDep) -> list[schemas.PolicyVersionPublic]:
    """Every version of the institution policy, newest first."""
    return [_version(v) for v in repo.versions(session, repo.INSTITUTION)]


@router.get("/institution/export")
def export_institution(session: SessionDep, format: FormatQuery = "yaml") -> Response:
    """The institution defaults and bounds as a JSON or YAML policy file."""
    return _dump(policies.export_institution(session), format)


@router.post("/institution/import")
def import_institution(
    request: Request,
    session: WriteSessionDep,
    text: Annotated[str, Body(media_type="text/plain")],
    format: Annotated[str, Query(pattern="^(json|yaml|)$")] = "",
) -> schemas.PolicyVersionPublic:
    """Import institution defaults and bounds from a JSON or YAML file (administrator)."""
    row = policies.import_institution(session, text=text, fmt=format, author=_author(request))
    return _committed(session, _version(row))


# --- courses (instructor) -------------------------------------------------------------------


@router.get("/courses/{course_id}")
def get_course(course_id: RowId, session: SessionDep) -> schemas.CoursePolicies:
    """A course's override and the override of each competency it assesses."""
    _course(session, course_id)
    competencies: dict[str, schemas.PolicyVersionPublic | None] = {}
    for row in repo.course_competencies(session, course_id):
        assert row.id is not None
        latest = repo.latest_version(session, repo.competency_scope(course_id, row.id))
        competencies[row.key] = None if latest is None else _version(latest)
    course = repo.latest_version(session, repo.course_scope(course_id))
    return schemas.CoursePolicies(
        course=None if course is None else _version(course), competencies=competencies
    )


@router.put("/courses/{course_id}")
def put_course(
    course_id: RowId, body: schemas.LayerIn, request: Request, session: WriteSessionDep
) -> schemas.PolicyVersionPublic:
    """Store the course's override as its next version; checked against the bounds."""
    _course(session, course_id)
    row = policies.save_course_override(
        session,
        course_id=course_id,
        document=body.document,
        author=_author(request),
        note=body.note,
    )
    return _committed(session, _version(row))


@router.put("/courses/{course_id}/competencies/{key:path}")
def put_course_competency(
    course_id: RowId, key: str, body: schemas.LayerIn, request: Request, session: WriteSessionDep
) -> schemas.PolicyVersionPublic:
    """Store a competency's override in the course (attaching it); checked against bounds."""
    _course(session, course_id)
    row = policies.save_competency_override(
        session,
        course_id=course_id,
        competency_row=policies.competency(session, key),
        document=body.document,
        author=_author(request),
        note=body.note,
    )
    return _committed(session, _version(row))


@router.get("/courses/{course_id}/effective/{key:path}")
def get_effective(
    course_id: RowId, key: str, session: WriteSessionDep
) -> schemas.EffectivePolicyPublic:
    """The policy in force for a competency in a course, with its number and hash."""
    _course(session, course_id)
    competency = policies.competency(session, key)
    policy, row = policies.effective(session, course_id=course_id, competency_row=competency)
    session.commit()  # a newly seen composition gets its number now
    return schemas.EffectivePolicyPublic(
        competency=competency.key,
        version=row.version,
        policy_hash=row.policy_hash,
        layers=row.layers,
        policy=row.document | {"version": policy.version},
    )


@router.get("/courses/{course_id}/export")
def export_course(course_id: RowId, session: SessionDep, format: FormatQuery = "yaml") -> Response:
    """The course's policies as one file `microcred evaluate --policy` reads."""
    _course(session, course_id)
    return _dump(policies.export_course(session, course_id=course_id), format)


@router.post("/courses/{course_id}/import")
def import_course(
    course_id: RowId,
    request: Request,
    session: WriteSessionDep,
    text: Annotated[str, Body(media_type="text/plain")],
    format: Annotated[str, Query(pattern="^(json|yaml|)$")] = "",
) -> list[schemas.PolicyVersionPublic]:
    """Import a course's overrides from a JSON or YAML policy file (instructor)."""
    _course(session, course_id)
    rows = policies.import_course(
        session, course_id=course_id, text=text, fmt=format, author=_author(request)
    )
    return _committed(session, [_version(v) for v in rows])


# --- decisions ------------------------------------------------------------------------------


@router.get("/decisions/{decision_id}")
def explain_decision(decision_id: RowId, session: SessionDep) -> dict[str, Any]:
    """A stored decision with the exact policy and evidence hash it was made with."""
    return policies.explain(session, decision_id=decision_id)
