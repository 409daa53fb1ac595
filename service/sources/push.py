"""The push API's request body and its conversion to results and verification events.

Proctoring and identity services, or any other system, post a batch for one course:
results (scores or rubric levels) and verification events ("identity verified on site for
sitting X"). The batch is idempotent: posting it again changes nothing, because each
result and event has a natural key (see ``service.sources.types``).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from sqlmodel import Session

from service.db.models import ImportRun
from service.db.types import MAX_ROW_ID
from service.sources import store
from service.sources.types import (
    Asserter,
    LearnerRef,
    Result,
    RubricLevel,
    SourceKind,
    SyncReport,
    Verification,
    VerificationEvent,
    ordered_scale,
)

__all__ = ["MAX_ITEMS", "PushBatch", "apply_batch"]

MAX_ITEMS = 1000
_Id = Field(min_length=1, max_length=255)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class LearnerIn(_Strict):
    lms_user_id: str = Field(default="", max_length=255)
    sub: str = Field(default="", max_length=255)
    email: str = Field(default="", max_length=320)

    @model_validator(mode="after")
    def _one_given(self) -> LearnerIn:
        if not (self.lms_user_id or self.sub or self.email):
            raise ValueError("give lms_user_id, sub or email")
        return self


class LevelIn(_Strict):
    id: str = _Id
    name: str = Field(default="", max_length=1000)
    points: float | None = Field(default=None, allow_inf_nan=False)


class ResultIn(_Strict):
    learner: LearnerIn
    kind: Literal["rubric_criterion", "quiz", "assignment", "manual", "push"] = "push"
    item_id: str = _Id
    item_title: str = Field(default="", max_length=500)
    criterion_id: str = Field(default="", max_length=255)
    criterion_title: str = Field(default="", max_length=1000)
    score: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    max_score: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    level: LevelIn | None = None
    scale: list[LevelIn] = Field(default_factory=list, max_length=50)
    attempt: int = Field(default=1, ge=1, le=MAX_ROW_ID)  # an INTEGER column
    submitted_at: AwareDatetime | None = None
    graded_at: AwareDatetime | None = None
    verification: Verification = Verification.UNSUPERVISED
    asserted_by: Literal["lms", "import", "instructor", "proctoring", "system"] = "system"
    note: str = Field(default="", max_length=1000)

    @model_validator(mode="after")
    def _score_or_level(self) -> ResultIn:
        if self.score is None and self.level is None:
            raise ValueError("give score and max_score, or a rubric level")
        if (self.score is None) != (self.max_score is None):
            raise ValueError("score and max_score go together")
        if self.score is not None and self.max_score is not None and self.score > self.max_score:
            raise ValueError(f"score {self.score:g} is above max_score {self.max_score:g}")
        if self.kind == "rubric_criterion" and not self.criterion_id:
            raise ValueError("a rubric_criterion result needs criterion_id")
        if (
            self.level is not None
            and self.scale
            and self.level.id not in {s.id for s in self.scale}
        ):
            raise ValueError(f"level {self.level.id!r} is not in scale")
        return self


class VerificationIn(_Strict):
    learner: LearnerIn
    item_id: str = _Id
    attempt: int | None = Field(default=None, ge=1, le=MAX_ROW_ID)
    sitting_id: str = Field(default="", max_length=255)
    level: Verification
    occurred_at: AwareDatetime
    asserted_by: Literal["proctoring", "instructor", "lms", "system"] = "proctoring"
    note: str = Field(default="", max_length=1000)


class PushBatch(_Strict):
    """A batch for one course (the microcred course id)."""

    course_id: int = Field(ge=1, le=MAX_ROW_ID)
    results: list[ResultIn] = Field(default_factory=list, max_length=MAX_ITEMS)
    verifications: list[VerificationIn] = Field(default_factory=list, max_length=MAX_ITEMS)


def _result(origin: str, r: ResultIn) -> Result:
    level = None
    if r.level is not None:
        scale = ordered_scale((s.id, s.name, s.points or 0.0) for s in r.scale)
        level = RubricLevel(id=r.level.id, name=r.level.name, points=r.level.points, scale=scale)
    return Result(
        origin=origin,
        kind=SourceKind(r.kind),
        learner=LearnerRef(r.learner.lms_user_id, r.learner.sub, r.learner.email),
        item_id=r.item_id,
        item_title=r.item_title,
        criterion_id=r.criterion_id,
        criterion_title=r.criterion_title,
        score=r.score,
        max_score=r.max_score,
        level=level,
        attempt=r.attempt,
        submitted_at=r.submitted_at.astimezone(dt.UTC) if r.submitted_at else None,
        graded_at=r.graded_at.astimezone(dt.UTC) if r.graded_at else None,
        verification=r.verification,
        asserted_by=Asserter(r.asserted_by),
        note=r.note,
    )


def apply_batch(
    session: Session,
    *,
    batch: PushBatch,
    token_name: str,
    actor: str,
    partial: bool,
    now: dt.datetime,
) -> SyncReport:
    """Store a pushed batch. The origin is ``push:<token name>``, so one system's token can
    never overwrite another system's results."""
    origin = f"push:{token_name}"[:100]
    results = [(f"results[{i}]", _result(origin, r)) for i, r in enumerate(batch.results)]
    events = [
        (
            f"verifications[{i}]",
            VerificationEvent(
                origin=origin,
                learner=LearnerRef(v.learner.lms_user_id, v.learner.sub, v.learner.email),
                item_id=v.item_id,
                attempt=v.attempt,
                sitting_id=v.sitting_id,
                level=v.level,
                asserted_by=Asserter(v.asserted_by),
                occurred_at=v.occurred_at.astimezone(dt.UTC),
                note=v.note,
            ),
        )
        for i, v in enumerate(batch.verifications)
    ]
    run = ImportRun(kind="push", origin=origin, actor=actor, status="running", started_at=now)
    session.add(run)
    return store.apply(
        session,
        course_id=batch.course_id,
        results=results,
        events=events,
        run=run,
        keep="always" if partial else "if_valid",
        now=now,
    )
