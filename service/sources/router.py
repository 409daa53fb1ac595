"""JSON API of the evidence store: push results, import CSV, read a course's evidence.

Every route needs a bearer API token (``microcred token create``) with the named scope.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile as StarletteUpload

from service import apitoken
from service.db.models import ApiToken
from service.db.types import utcnow
from service.deps import RowId, SessionDep, WriteSessionDep, scope
from service.sources import csvimport, push, store
from service.sources.types import SyncReport

router = APIRouter(prefix="/api", tags=["evidence"])

WriteToken = Annotated[ApiToken, Depends(scope("evidence:write"))]
ReadToken = Annotated[ApiToken, Depends(scope("evidence:read"))]


def _answer(report: SyncReport, *, dry_run: bool = False) -> JSONResponse:
    if report.applied or dry_run:
        return JSONResponse({"report": report.as_dict()})
    return JSONResponse(
        {
            "error": "import_rejected",
            "detail": f"{len(report.rejected)} record(s) are not valid; nothing was written",
            "hint": "Fix the records listed in report.rejected and send again, or send "
            "with partial=true to write the valid ones.",
            "report": report.as_dict(),
        },
        status_code=422,
    )


@router.post("/evidence")
def post_evidence(
    batch: push.PushBatch,
    session: WriteSessionDep,
    token: WriteToken,
    partial: Annotated[bool, Query(description="Write the valid records of the batch")] = False,
) -> JSONResponse:
    """Post results and verification events for one course (idempotent)."""
    now = utcnow()
    report = push.apply_batch(
        session,
        batch=batch,
        token_name=token.name,
        actor=f"api-token:{token.id}",
        partial=partial,
        now=now,
    )
    apitoken.touch(session, token_id=token.id, now=now)
    session.commit()  # a rejected batch still records its import run
    return _answer(report)


@dataclass(frozen=True)
class _Upload:
    token: ApiToken
    filename: str
    data: bytes


async def _csv_upload(request: Request, token: WriteToken) -> _Upload:
    """The uploaded CSV file, parsed only once the token has been checked.

    A declared ``File()`` parameter would make FastAPI parse the multipart body before any
    dependency runs: an anonymous caller with a malformed body would get 400 instead of 401.
    """
    async with request.form(max_files=1, max_fields=8) as form:
        file = form.get("file")
        if not isinstance(file, StarletteUpload):
            missing = {"type": "missing", "loc": ("body", "file"), "msg": "Field required"}
            raise RequestValidationError([missing | {"input": None}])
        data = await file.read(csvimport.MAX_BYTES + 1)
        return _Upload(token, file.filename or "", data)


_CSV_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": "CSV file, columns in docs/csv-import.md",
                    }
                },
            }
        }
    },
}


@router.post("/courses/{course_id}/evidence/import", openapi_extra={"requestBody": _CSV_BODY})
def import_evidence_csv(
    course_id: RowId,
    session: WriteSessionDep,
    upload: Annotated[_Upload, Depends(_csv_upload)],
    mode: Annotated[
        Literal["all", "partial", "dry_run"],
        Query(description="all-or-nothing (default), write the valid rows, or report only"),
    ] = "all",
) -> JSONResponse:
    """Import a CSV file of results into a course."""
    now = utcnow()
    report = csvimport.import_csv(
        session,
        course_id=course_id,
        data=upload.data,
        mode=mode,
        filename=upload.filename,
        actor=f"api-token:{upload.token.id}",
        now=now,
    )
    if mode != "dry_run":
        apitoken.touch(session, token_id=upload.token.id, now=now)
        session.commit()
    return _answer(report, dry_run=mode == "dry_run")


@router.get("/courses/{course_id}/evidence")
def list_course_evidence(course_id: RowId, session: SessionDep, token: ReadToken) -> dict[str, Any]:
    """A course's stored evidence, with each result's effective verification."""
    store.platform_of_course(session, course_id=course_id)
    records = store.list_evidence(session, course_id=course_id)
    return {
        "course_id": course_id,
        "evidence": [
            {
                "id": r.id,
                "person_id": r.person_id,
                "origin": r.origin,
                "kind": r.kind,
                "item_id": r.item_id,
                "item_title": r.item_title,
                "criterion_id": r.criterion_id,
                "criterion_title": r.criterion_title,
                "score": r.score,
                "max_score": r.max_score,
                "level": None
                if r.level_id is None
                else {"id": r.level_id, "name": r.level_name, "points": r.level_points},
                "scale": [{"id": a, "name": b, "points": c} for a, b, c in r.level_scale],
                "attempt": r.attempt,
                "submitted_at": r.submitted_at.isoformat() if r.submitted_at else None,
                "graded_at": r.graded_at.isoformat() if r.graded_at else None,
                "verification": r.verification.value,
                "verification_basis": r.verification_basis,
                "asserted_by": r.asserted_by,
                "version": r.version,
            }
            for r in records
        ],
    }
