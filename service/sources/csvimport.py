"""CSV import of results (columns documented in ``docs/csv-import.md``).

:func:`parse` is pure: bytes in, results and problems out, each problem naming its line,
column and reason. :func:`import_csv` matches learners and writes through the store with
the chosen mode: ``all`` (default, all-or-nothing), ``partial`` (write the valid rows) or
``dry_run`` (write nothing, report what would happen).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import re
from collections.abc import Callable
from typing import Literal, TypeVar

from sqlmodel import Session

from service.db.models import ImportRun
from service.sources import store
from service.sources.types import (
    Asserter,
    LearnerRef,
    Problem,
    Result,
    RubricLevel,
    SourceKind,
    SyncReport,
    Verification,
    ordered_scale,
)

__all__ = ["COLUMNS", "MAX_BYTES", "MAX_ROWS", "Mode", "import_csv", "parse"]

Mode = Literal["all", "partial", "dry_run"]

MAX_BYTES = 10 * 1024 * 1024
MAX_ROWS = 100_000

LEARNER_COLUMNS = ("lms_user_id", "sub", "email")
COLUMNS = (
    *LEARNER_COLUMNS,
    "kind",
    "item_id",
    "item_title",
    "criterion_id",
    "criterion_title",
    "score",
    "max_score",
    "level_id",
    "level_name",
    "level_points",
    "level_scale",
    "attempt",
    "submitted_at",
    "graded_at",
    "verification",
    "asserted_by",
    "source",
    "note",
)
CSV_KINDS = {k.value for k in SourceKind if k is not SourceKind.PUSH}
CSV_ASSERTERS = {a.value for a in (Asserter.IMPORT, Asserter.INSTRUCTOR, Asserter.PROCTORING)}
_SOURCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,59}$")
_DECIMAL_COMMA = re.compile(r"^-?\d+,\d+$")


class _RowError(Exception):
    def __init__(self, column: str, reason: str) -> None:
        super().__init__(reason)
        self.column = column
        self.reason = reason


def _number(row: dict[str, str], column: str) -> float | None:
    raw = row.get(column, "").strip()
    if not raw:
        return None
    if _DECIMAL_COMMA.match(raw):
        raw = raw.replace(",", ".")
    try:
        value = float(raw)
    except ValueError:
        raise _RowError(column, f"{raw!r} is not a number") from None
    if not math.isfinite(value):
        raise _RowError(column, f"{raw!r} is not a finite number")
    return value


def _when(row: dict[str, str], column: str) -> dt.datetime | None:
    raw = row.get(column, "").strip()
    if not raw:
        return None
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise _RowError(
            column, f"{raw!r} is not an ISO 8601 date-time (e.g. 2026-11-02T10:00:00Z)"
        ) from None
    if value.tzinfo is None:
        raise _RowError(
            column, f"{raw!r} has no time zone; add one, e.g. {raw}Z for UTC or {raw}+01:00"
        )
    return value.astimezone(dt.UTC)


def _choice(row: dict[str, str], column: str, allowed: set[str], default: str) -> str:
    raw = row.get(column, "").strip() or default
    if raw not in allowed:
        raise _RowError(column, f"{raw!r} is not one of: {', '.join(sorted(allowed))}")
    return raw


def _scale(raw: str) -> tuple[tuple[str, str, float], ...]:
    """``L1:0:Not yet|L2:1:Developing`` -> ((L1, Not yet, 0.0), (L2, Developing, 1.0))."""
    levels = []
    for part in raw.split("|"):
        bits = part.strip().split(":", 2)
        if len(bits) != 3 or not bits[0].strip():
            raise _RowError(
                "level_scale", f"{part.strip()!r} is not id:points:name (e.g. L2:1:Developing)"
            )
        try:
            points = float(bits[1])
        except ValueError:
            raise _RowError(
                "level_scale", f"points {bits[1]!r} in {part!r} is not a number"
            ) from None
        levels.append((bits[0].strip(), bits[2].strip(), points))
    ids = [lv[0] for lv in levels]
    if len(set(ids)) != len(ids):
        raise _RowError("level_scale", "a level id appears twice")
    return ordered_scale(levels)


def _learner(row: dict[str, str]) -> LearnerRef:
    learner = LearnerRef(
        lms_user_id=row.get("lms_user_id", "").strip(),
        sub=row.get("sub", "").strip(),
        email=row.get("email", "").strip(),
    )
    if not (learner.lms_user_id or learner.sub or learner.email):
        raise _RowError("lms_user_id", "no learner given: fill lms_user_id, sub or email")
    if learner.email and "@" not in learner.email:
        raise _RowError("email", "not an e-mail address")
    return learner


def _kind(row: dict[str, str]) -> SourceKind:
    if not row.get("kind", "").strip():
        raise _RowError("kind", f"missing; one of: {', '.join(sorted(CSV_KINDS))}")
    return SourceKind(_choice(row, "kind", CSV_KINDS, ""))


def _item(row: dict[str, str]) -> str:
    item_id = row.get("item_id", "").strip()
    if not item_id:
        raise _RowError("item_id", "missing: the id of the quiz, assignment or activity")
    if len(item_id) > 255:
        raise _RowError("item_id", "longer than 255 characters")
    return item_id


def _criterion(row: dict[str, str], kind: SourceKind | None) -> str:
    criterion_id = row.get("criterion_id", "").strip()
    if kind is SourceKind.RUBRIC_CRITERION and not criterion_id:
        raise _RowError("criterion_id", "missing: a rubric_criterion row names its criterion")
    if len(criterion_id) > 255:
        raise _RowError("criterion_id", "longer than 255 characters")
    return criterion_id


def _score(row: dict[str, str]) -> tuple[float | None, float | None]:
    score, max_score = _number(row, "score"), _number(row, "max_score")
    if score is not None:
        if max_score is None:
            raise _RowError("max_score", "missing: a score needs the maximum it is out of")
        if max_score <= 0:
            raise _RowError("max_score", f"{max_score:g} must be greater than 0")
        if not 0 <= score <= max_score:
            raise _RowError("score", f"{score:g} is outside 0..{max_score:g}")
    elif max_score is not None:
        raise _RowError("score", "missing although max_score is given")
    return score, max_score


def _level(row: dict[str, str]) -> RubricLevel | None:
    level_id = row.get("level_id", "").strip()
    level_name = row.get("level_name", "").strip()
    level_points = _number(row, "level_points")
    raw_scale = row.get("level_scale", "").strip()
    scale = _scale(raw_scale) if raw_scale else ()
    if not (level_id or level_name):
        return None
    level_id = level_id or level_name
    if scale:
        match = {lv[0]: lv for lv in scale}.get(level_id)
        if match is None:
            known = ", ".join(lv[0] for lv in scale)
            raise _RowError("level_id", f"{level_id!r} is not in level_scale ({known})")
        level_name = level_name or match[1]
        if level_points is None:
            level_points = match[2]
        elif level_points != match[2]:
            raise _RowError(
                "level_points",
                f"{level_points:g} differs from {match[2]:g} given for {level_id} in level_scale",
            )
    return RubricLevel(id=level_id, name=level_name, points=level_points, scale=scale)


def _attempt(row: dict[str, str]) -> int:
    raw = row.get("attempt", "").strip() or "1"
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise _RowError("attempt", f"{raw!r} is not a whole number from 1 up")
    return int(raw)


def _source(row: dict[str, str]) -> str:
    source = row.get("source", "").strip() or "csv"
    if not _SOURCE_RE.match(source):
        raise _RowError("source", "use letters, digits and . _ : - (at most 60)")
    return source


_VERIFICATIONS = {v.value for v in Verification}
T = TypeVar("T")


def _row(row: dict[str, str]) -> Result | list[Problem]:
    """The row's result, or every problem it has (each column checked on its own)."""
    problems: list[Problem] = []

    def check(fn: Callable[[], T]) -> T | None:
        try:
            return fn()
        except _RowError as exc:
            problems.append(Problem("", exc.column, exc.reason))
            return None

    learner = check(lambda: _learner(row))
    kind = check(lambda: _kind(row))
    item_id = check(lambda: _item(row))
    criterion_id = check(lambda: _criterion(row, kind))
    scored = check(lambda: _score(row))
    level = check(lambda: _level(row))
    if (
        scored == (None, None)
        and level is None
        and not any(p.field.startswith("level") for p in problems)
    ):
        problems.append(
            Problem("", "score", "missing: give score (and max_score) or a rubric level")
        )
    attempt = check(lambda: _attempt(row))
    submitted_at = check(lambda: _when(row, "submitted_at"))
    graded_at = check(lambda: _when(row, "graded_at"))
    verification = check(
        lambda: _choice(row, "verification", _VERIFICATIONS, Verification.UNSUPERVISED.value)
    )
    asserted_by = check(lambda: _choice(row, "asserted_by", CSV_ASSERTERS, Asserter.IMPORT.value))
    source = check(lambda: _source(row))
    if problems:
        return problems
    assert learner and kind and item_id and scored and attempt and verification
    assert asserted_by and source and criterion_id is not None
    return Result(
        origin=source,
        kind=kind,
        learner=learner,
        item_id=item_id,
        item_title=row.get("item_title", "").strip(),
        criterion_id=criterion_id,
        criterion_title=row.get("criterion_title", "").strip(),
        score=scored[0],
        max_score=scored[1],
        level=level,
        attempt=attempt,
        submitted_at=submitted_at,
        graded_at=graded_at,
        verification=Verification(verification),
        asserted_by=Asserter(asserted_by),
        note=row.get("note", "").strip(),
    )


def parse(data: bytes) -> tuple[list[tuple[str, Result]], list[Problem]]:
    """Parse a CSV file into results tagged "line N", and the problems of the bad rows.

    A problem with the file itself (encoding, header) is reported on line 1 and no row is
    returned, because no row can be trusted then.
    """
    if len(data) > MAX_BYTES:
        return [], [Problem("line 1", "file", f"larger than {MAX_BYTES // 1024 // 1024} MB")]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return [], [
            Problem(
                "line 1",
                "file",
                f"not UTF-8 text (byte {exc.start}); save it as 'CSV UTF-8' and try again",
            )
        ]
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return [], [Problem("line 1", "file", "the file is empty; the first line is the header")]
    except csv.Error as exc:
        return [], [Problem("line 1", "header", f"not readable as CSV: {exc}")]
    names = [h.strip().lower() for h in header]
    if len(names) == 1 and ";" in names[0]:
        return [], [Problem("line 1", "header", "columns must be separated by commas, not ';'")]
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        return [], [
            Problem(
                "line 1",
                ", ".join(unknown),
                "unknown column(s); allowed: " + ", ".join(COLUMNS),
            )
        ]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        return [], [Problem("line 1", ", ".join(dupes), "column given more than once")]
    missing = [c for c in ("kind", "item_id") if c not in names]
    if not any(c in names for c in LEARNER_COLUMNS):
        missing.insert(0, "lms_user_id|sub|email")
    if missing:
        return [], [Problem("line 1", ", ".join(missing), "required column(s) missing")]
    results: list[tuple[str, Result]] = []
    problems: list[Problem] = []
    count = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(Problem(f"line {reader.line_num}", "row", f"not readable: {exc}"))
            break
        where = f"line {reader.line_num}"
        if not any(c.strip() for c in cells):
            continue  # blank lines are not records
        count += 1
        if count > MAX_ROWS:
            problems.append(Problem(where, "row", f"more than {MAX_ROWS} rows; split the file"))
            break
        if len(cells) != len(names):
            problems.append(
                Problem(where, "row", f"has {len(cells)} cells but the header has {len(names)}")
            )
            continue
        outcome = _row(dict(zip(names, cells, strict=True)))
        if isinstance(outcome, Result):
            results.append((where, outcome))
        else:
            problems += [Problem(where, p.field, p.reason) for p in outcome]
    return results, problems


_KEEP: dict[Mode, Literal["always", "if_valid", "never"]] = {
    "all": "if_valid",
    "partial": "always",
    "dry_run": "never",
}


def import_csv(
    session: Session,
    *,
    course_id: int,
    data: bytes,
    mode: Mode = "all",
    filename: str = "",
    actor: str = "",
    now: dt.datetime,
) -> SyncReport:
    """Import a CSV file into a course's evidence and return the report.

    ``report.applied`` is False when nothing was written (dry run, or a rejected row
    under the all-or-nothing mode); the ``import_run`` row records the attempt either way.
    """
    results, problems = parse(data)
    run = ImportRun(
        course_id=course_id,
        kind="csv",
        origin="csv",
        actor=actor,
        filename=filename[:500],
        status="running",
        started_at=now,
    )
    session.add(run)
    keep = _KEEP[mode]
    return store.apply(
        session,
        course_id=course_id,
        results=results,
        problems=problems,
        run=run,
        keep=keep,
        now=now,
    )
