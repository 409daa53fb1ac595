"""Moodle web services (REST protocol, token-based): quiz attempts, assignment grades and
rubric fillings of one course.

Calls (function names and shapes: lib/db/services.php and each function's
``execute_returns()`` in moodle/moodle; reference/lti.md §2.8):

- ``gradereport_user_get_grade_items`` (courseid, userid=0 = everyone) -> {usergrades:
  [{userid, gradeitems: [{itemmodule, iteminstance, cmid, graderaw, grademax}]}]}: which
  learners have a quiz grade (names in the answer are ignored)
- ``mod_quiz_get_quizzes_by_courses`` (courseids[]) -> {quizzes: [{id, coursemodule, name,
  sumgrades, grade}]}
- ``mod_quiz_get_user_attempts`` (quizid, userid, status=finished) -> {attempts: [{id,
  attempt, state, timefinish, timemodified, sumgrades}]}
- ``mod_assign_get_assignments`` (courseids[], includenotenrolledcourses=1) -> {courses:
  [{assignments: [{id, cmid, name, grade}]}]}; without ``includenotenrolledcourses`` a
  service user who is not enrolled in the course (a system-capability user) gets no course
  and only a warning (mod/assign/externallib.php ``get_assignments``)
- ``mod_assign_get_grades`` (assignmentids[], since) -> {assignments: [{assignmentid, grades:
  [{id, userid, attemptnumber, timemodified, grade}]}]}; ``since`` (a Unix time): only
  grades modified since then
- ``core_grading_get_definitions`` (cmids[], areaname=submissions, activeonly=1) ->
  {areas: [{cmid, activemethod, definitions: [{id, method, rubric: {rubric_criteria:
  [{id, description, levels: [{id, score, definition}]}]}}]}]}
- ``core_grading_get_gradingform_instances`` (definitionid, since=0) -> {instances: [{id,
  itemid, status, timemodified, rubric: {criteria: [{criterionid, levelid, remark}]}}]};
  ``itemid`` is the ``assign_grades.id`` returned by ``mod_assign_get_grades``; ``since``:
  only fillings modified since then.

An incremental pull (``fetch_course(..., since=...)``) passes ``since`` to those two and
asks quiz attempts only of learners whose quiz grade (``gradedategraded``, when the
gradebook gives it) is that recent; a rubric filling is saved together with its grade, so
both show up. Deletions are not visible that way: the scheduled sync pulls in full now and
then (``MICROCRED_SYNC_FULL_INTERVAL_SECONDS``).

Moodle answers errors with HTTP 200 and ``{"exception", "errorcode", "message"}``, and
partial answers with a ``warnings`` list ([{item, itemid, warningcode, message}]) beside the
data: every warning becomes a rejected item of the sync with what to fix, so nothing is
dropped silently. The capabilities each function checks are listed in
docs/evidence-sources.md. The
LTI 1.3 ``sub`` Moodle sends is the Moodle user id (reference/lti.md §2.2), so learners
match by ``sub`` without a link table.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from service import outbound
from service.sources.connectors.base import Fetched, RetryPolicy, from_unix, send
from service.sources.errors import SourceAuthFailed, SourceDataError, SourceRefused
from service.sources.types import LearnerRef, Problem, RubricLevel, SourceKind, ordered_scale

__all__ = ["MoodleConnector"]

# gradingform_instance::INSTANCE_STATUS_ACTIVE (grade/grading/form/lib.php): the filling
# that counts; others are drafts, need-update or archived copies.
_INSTANCE_ACTIVE = 1


def _flatten(params: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Moodle REST wants PHP-style keys: ``courseids[0]=5``, ``options[0][name]=x``."""
    out: list[tuple[str, str]] = []
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(value, Mapping):
            out += _flatten(value, name)
        elif isinstance(value, list | tuple):
            out += _flatten({str(i): v for i, v in enumerate(value)}, name)
        else:
            out.append((name, str(int(value)) if isinstance(value, bool) else str(value)))
    return out


def _score(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


# What the service user lacks when a function warns, by function (the capability each
# function checks, moodle/moodle 5.1).
_NEEDS = {
    "gradereport_user_get_grade_items": "gradereport/user:view and moodle/grade:viewall",
    "mod_quiz_get_quizzes_by_courses": "mod/quiz:view",
    "mod_quiz_get_user_attempts": "mod/quiz:view and mod/quiz:viewreports",
    "mod_assign_get_assignments": "moodle/course:view and mod/assign:view",
    "mod_assign_get_grades": "mod/assign:viewgrades (or mod/assign:grade)",
    "core_grading_get_definitions": "moodle/course:view (access to the course module)",
    "core_grading_get_gradingform_instances": "moodle/grade:managegradingforms",
}
# Warnings that say "nothing there" rather than "not allowed".
_EMPTY = ("no grades found", "no submissions found", "no user flags found", "no mappings found")


def _warning(function: str, warning: Any) -> Problem:
    """One entry of a Moodle ``warnings`` list as a rejected item, with what to do."""
    w = warning if isinstance(warning, Mapping) else {"message": str(warning)}
    item = f"{w.get('item') or 'item'} {w.get('itemid') or ''}".strip()
    message = str(w.get("message") or "")[:300]
    code = str(w.get("warningcode") or "")
    if message.lower().startswith(_EMPTY):
        fix = "nothing to fix: Moodle has no such records yet"
    else:
        fix = (
            f"give the web service user {_NEEDS.get(function, 'the capability it names')} "
            "at system level (or in the course), and check that the function is in the "
            "external service (docs/evidence-sources.md)"
        )
    return Problem(
        f"Moodle {function}: {item}",
        "warnings",
        f"Moodle warned{f' ({code})' if code else ''}: {message}; {fix}",
    )


def _older(item: Mapping[str, Any], since: int) -> bool:
    """The gradebook says this grade was last graded or submitted before ``since``
    (unknown: not older)."""
    stamps = [v for v in (item.get("gradedategraded"), item.get("gradedatesubmitted")) if v]
    return bool(stamps) and all(isinstance(v, int | float) and v < since for v in stamps)


def _withheld(problem: Problem) -> bool:
    return "nothing to fix" not in problem.reason


class MoodleConnector:
    kind = "moodle"

    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        origin: str = "moodle",
        client: httpx.Client | None = None,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.origin = origin
        self._token = token
        self._client = client or outbound.client(outbound.default_policy(), timeout=30.0)
        self._policy = policy or RetryPolicy()
        self._sleep = sleep
        self._requests = 0
        self._warnings: list[Problem] = []
        self._since = 0  # Unix time of an incremental pull; 0: everything

    def call(self, function: str, **params: Any) -> Any:
        """Call one web-service function; the token goes in the body, never the URL."""
        data = [
            ("wstoken", self._token),
            ("wsfunction", function),
            ("moodlewsrestformat", "json"),
            *_flatten(params),
        ]
        request = self._client.build_request(
            "POST", f"{self.base_url}/webservice/rest/server.php", data=dict(data)
        )
        self._requests += 1
        response = send(
            self._client,
            request,
            what=f"Moodle {function}",
            policy=self._policy,
            sleep=self._sleep,
        )
        if response.status_code in (401, 403):
            raise SourceAuthFailed(
                f"Moodle {function}: HTTP {response.status_code}",
                hint="Check the web service token and that web services are enabled.",
            )
        if response.status_code >= 400:
            raise SourceRefused(f"Moodle {function}: HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise SourceDataError(
                f"Moodle {function}: the answer is not JSON",
                hint="Is the base URL the Moodle site root, and the REST protocol enabled?",
            ) from None
        if isinstance(body, dict) and "exception" in body:
            self._raise(function, body)
        if isinstance(body, dict) and isinstance(body.get("warnings"), list):
            self._warnings += [_warning(function, w) for w in body["warnings"]]
        return body

    def _raise(self, function: str, body: Mapping[str, Any]) -> None:
        code = str(body.get("errorcode", ""))
        message = str(body.get("message", ""))[:300]
        if code in ("invalidtoken", "invalidtokenexpired", "usernotfullysetup"):
            raise SourceAuthFailed(
                f"Moodle rejected the web service token ({code}): {message}",
                hint="Create a new token for the service user (Site administration > Server > "
                "Web services > Manage tokens) and update the connection.",
            )
        if code in ("accessexception", "nopermissions", "requireloginerror") or "capability" in (
            code + message
        ):
            raise SourceRefused(
                f"Moodle refused {function} ({code}): {message}",
                hint=f"Add {function} to the external service and give the service user the "
                "capability it names in the course.",
            )
        raise SourceRefused(f"Moodle {function} failed ({code or 'error'}): {message}")

    @staticmethod
    def _list(body: Any, key: str, function: str) -> list[dict[str, Any]]:
        value = body.get(key) if isinstance(body, dict) else body if key == "" else None
        if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
            raise SourceDataError(
                f"Moodle {function}: expected a list under {key or 'the top level'!r}"
            )
        return value

    def fetch_course(self, lms_course_id: str, *, since: dt.datetime | None = None) -> Fetched:
        """Read every quiz attempt, assignment grade and rubric filling of a course (with
        ``since``: those changed since then, as far as Moodle can filter)."""
        if not (lms_course_id.isascii() and lms_course_id.isdigit()):
            raise SourceRefused(f"{lms_course_id!r} is not a Moodle course id (a number)")
        self._since = int(since.timestamp()) if since is not None else 0
        try:
            return self._fetch(int(lms_course_id))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SourceDataError(
                f"Moodle answered without a field the documented shape has ({exc!r})",
                hint="The Moodle version may be unsupported; nothing was imported.",
            ) from exc

    def _fetch(self, cid: int) -> Fetched:
        out = Fetched(self.origin)
        # One call for the whole gradebook tells which learners have a quiz grade, so
        # attempts are asked only for them (mod_quiz_get_user_attempts is per user).
        fn = "gradereport_user_get_grade_items"
        graded: dict[int, set[int]] = {}
        for usergrade in self._list(self.call(fn, courseid=cid, userid=0), "usergrades", fn):
            for item in usergrade.get("gradeitems", []):
                if item.get("itemmodule") == "quiz" and item.get("graderaw") is not None:
                    if self._since and _older(item, self._since):
                        continue
                    graded.setdefault(int(item["iteminstance"]), set()).add(
                        int(usergrade["userid"])
                    )
        self._quizzes(out, cid, graded)
        self._assignments(out, cid)
        out.problems += self._warnings
        out.complete = not any(_withheld(p) for p in self._warnings)
        out.incremental = bool(self._since)
        out.requests = self._requests
        return out

    def _learner(self, user_id: Any) -> LearnerRef:
        return LearnerRef(lms_user_id=str(user_id), sub=str(user_id))

    def _quizzes(self, out: Fetched, cid: int, graded: Mapping[int, set[int]]) -> None:
        fn = "mod_quiz_get_quizzes_by_courses"
        quizzes = self._list(self.call(fn, courseids=[cid]), "quizzes", fn)
        for quiz in quizzes:
            max_marks = _score(quiz.get("sumgrades"))
            for uid in sorted(graded.get(int(quiz["id"]), ())):
                fn = "mod_quiz_get_user_attempts"
                attempts = self._list(
                    self.call(fn, quizid=quiz["id"], userid=uid, status="finished"),
                    "attempts",
                    fn,
                )
                for a in attempts:
                    where = f"quiz {quiz.get('coursemodule')} attempt {a.get('id')}"
                    marks = _score(a.get("sumgrades"))
                    if a.get("state") != "finished":
                        continue
                    if marks is None:
                        out.problems.append(
                            Problem(where, "sumgrades", "not graded yet (manual marking pending)")
                        )
                        continue
                    if not max_marks:
                        out.problems.append(
                            Problem(where, "sumgrades", "the quiz has no total marks")
                        )
                        continue
                    out.add(
                        where,
                        kind=SourceKind.QUIZ,
                        learner=self._learner(a.get("userid", uid)),
                        item_id=str(quiz["coursemodule"]),
                        item_title=str(quiz.get("name", "")),
                        score=marks,
                        max_score=max_marks,
                        attempt=int(a.get("attempt") or 1),
                        submitted_at=from_unix(a.get("timefinish")),
                        graded_at=from_unix(a.get("timemodified")),
                    )

    def _assignments(self, out: Fetched, cid: int) -> None:
        fn = "mod_assign_get_assignments"
        # A service user with system capabilities is not enrolled in the course: ask for the
        # courses it can see, not only those it is enrolled in.
        courses = self._list(
            self.call(fn, courseids=[cid], includenotenrolledcourses=1), "courses", fn
        )
        assigns = [a for c in courses for a in c.get("assignments", [])]
        if not assigns:
            return
        fn = "mod_assign_get_grades"
        grade_sets = self._list(
            self.call(fn, assignmentids=[a["id"] for a in assigns], since=self._since),
            "assignments",
            fn,
        )
        grades = {int(g["assignmentid"]): g.get("grades", []) for g in grade_sets}
        fn = "core_grading_get_definitions"
        areas = self._list(
            self.call(fn, cmids=[a["cmid"] for a in assigns], areaname="submissions", activeonly=1),
            "areas",
            fn,
        )
        area_by_cmid = {int(a["cmid"]): a for a in areas}
        for assign in assigns:
            cmid = int(assign["cmid"])
            rows = grades.get(int(assign["id"]), [])
            max_grade = _score(assign.get("grade"))
            by_item: dict[int, dict[str, Any]] = {}
            for g in rows:
                by_item[int(g["id"])] = g
                where = f"assignment {cmid} grade {g.get('id')}"
                value = _score(g.get("grade"))
                if value is None or value < 0:
                    continue  # -1: not graded (mod/assign)
                if max_grade is None or max_grade <= 0:
                    out.problems.append(
                        Problem(where, "grade", "graded on a scale, not points; not imported")
                    )
                    continue
                out.add(
                    where,
                    kind=SourceKind.ASSIGNMENT,
                    learner=self._learner(g["userid"]),
                    item_id=str(cmid),
                    item_title=str(assign.get("name", "")),
                    score=value,
                    max_score=max_grade,
                    attempt=int(g.get("attemptnumber") or 0) + 1,
                    graded_at=from_unix(g.get("timemodified")),
                )
            area = area_by_cmid.get(cmid)
            if area is not None and area.get("activemethod") == "rubric":
                self._rubric(out, assign, area, by_item)

    def _rubric(
        self,
        out: Fetched,
        assign: Mapping[str, Any],
        area: Mapping[str, Any],
        by_item: Mapping[int, Mapping[str, Any]],
    ) -> None:
        cmid = int(assign["cmid"])
        defs = [d for d in area.get("definitions", []) if d.get("method") == "rubric"]
        rubric = defs[0].get("rubric") if defs else None
        criteria = rubric.get("rubric_criteria") if isinstance(rubric, dict) else None
        if not criteria:
            out.problems.append(
                Problem(
                    f"assignment {cmid}",
                    "rubric",
                    "grading method is rubric but Moodle returned no rubric definition; "
                    "the rubric results of this assignment were not imported",
                )
            )
            return
        crit = {int(c["id"]): c for c in criteria}
        fn = "core_grading_get_gradingform_instances"
        instances = self._list(
            self.call(fn, definitionid=defs[0]["id"], since=self._since), "instances", fn
        )
        for inst in instances:
            if inst.get("status") != _INSTANCE_ACTIVE:
                continue
            where = f"assignment {cmid} rubric filling {inst.get('id')}"
            grade = by_item.get(int(inst.get("itemid", 0)))
            if grade is None and self._since:
                continue  # its grade did not change since: the next full pull reads it
            if grade is None:
                out.problems.append(
                    Problem(where, "itemid", "the filling belongs to no grade of this assignment")
                )
                continue
            self._fillings(out, assign, inst, grade, crit, where=where)

    def _fillings(
        self,
        out: Fetched,
        assign: Mapping[str, Any],
        inst: Mapping[str, Any],
        grade: Mapping[str, Any],
        crit: Mapping[int, Mapping[str, Any]],
        *,
        where: str,
    ) -> None:
        """One result per filled criterion of an active rubric filling."""
        cmid = int(assign["cmid"])
        fillings = (inst.get("rubric") or {}).get("criteria") or []
        for f in fillings:
            c = crit.get(int(f.get("criterionid", 0)))
            if c is None:
                out.problems.append(
                    Problem(where, "criterionid", f"{f.get('criterionid')} is not in the rubric")
                )
                continue
            levels = c.get("levels", [])
            scale = ordered_scale(
                (str(lv["id"]), str(lv.get("definition", "")), float(lv["score"])) for lv in levels
            )
            chosen = next((lv for lv in levels if lv["id"] == f.get("levelid")), None)
            if chosen is None:
                out.problems.append(
                    Problem(
                        where,
                        "levelid",
                        f"criterion {c['id']}: level {f.get('levelid')} is not one of its "
                        "levels (no level chosen or the rubric changed)",
                    )
                )
                continue
            out.add(
                f"{where} criterion {c['id']}",
                kind=SourceKind.RUBRIC_CRITERION,
                learner=self._learner(grade["userid"]),
                item_id=str(cmid),
                item_title=str(assign.get("name", "")),
                criterion_id=str(c["id"]),
                criterion_title=str(c.get("description", "")),
                level=RubricLevel(
                    id=str(chosen["id"]),
                    name=str(chosen.get("definition", "")),
                    points=float(chosen["score"]),
                    scale=scale,
                ),
                attempt=int(grade.get("attemptnumber") or 0) + 1,
                graded_at=from_unix(inst.get("timemodified")),
            )
