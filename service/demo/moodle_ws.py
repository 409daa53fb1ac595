"""The demo LMS answers the Moodle web-service functions microcred's Moodle connector calls.

So the demo's sample results reach the tool through the same HTTP path a real Moodle site
takes (``POST /webservice/rest/server.php``, token in the body, errors as HTTP 200 with
``{"exception", "errorcode", "message"}``). Shapes follow each function's
``execute_returns()`` in moodle/moodle (see ``service/sources/connectors/moodle.py``).

Moodle numbers everything; the sample course uses readable ids, so this module gives them
Moodle-like numbers: the course is ``LMS_COURSE_ID``, users count from 3 (Moodle's guest
and admin are 1 and 2), the project is assignment 1 (course module 11), quizzes are course
modules 21, 22, …

It also receives the tool's webhook deliveries (``POST /webhooks/microcred``), so the demo
shows the outbox delivering without any external network.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from service.demo.course import Course

__all__ = [
    "ASSIGNMENT_CMID",
    "LMS_COURSE_ID",
    "WEBHOOK_PATH",
    "criterion_number",
    "quiz_cmid",
    "router",
    "user_number",
    "ws_token",
]

LMS_COURSE_ID = 101
ASSIGNMENT_ID = 1
ASSIGNMENT_CMID = 11
RUBRIC_DEFINITION_ID = 1
WEBHOOK_PATH = "/webhooks/microcred"

router = APIRouter(include_in_schema=False)
_calls: dict[str, int] = {}  # how often each web-service function was called: what the tool pulled
_lock = threading.Lock()


def ws_token(secret: str) -> str:
    """The web-service token of the demo's service user (derived, never printed)."""
    return hashlib.sha256(b"demo-moodle-ws:" + secret.encode()).hexdigest()[:32]


def user_number(course: Course, user_id: str) -> int:
    ids = [m.user_id for m in course.members]
    return 3 + ids.index(user_id)


def quiz_cmid(course: Course, quiz_id: str) -> int:
    return 21 + [q.id for q in course.quizzes].index(quiz_id)


def criterion_number(course: Course, criterion_id: str) -> int:
    return 1 + [c.id for c in course.criteria].index(criterion_id)


def _level_number(course: Course, criterion_id: str, level_id: str) -> int:
    crit = next(c for c in course.criteria if c.id == criterion_id)
    return criterion_number(course, criterion_id) * 10 + [lv.id for lv in crit.levels].index(
        level_id
    )


def _error(code: str, message: str) -> JSONResponse:
    # Moodle answers web-service errors with HTTP 200 and this body.
    return JSONResponse({"exception": "moodle_exception", "errorcode": code, "message": message})


def _many(form: dict[str, str], name: str) -> list[str]:
    return [v for k, v in sorted(form.items()) if k.startswith(name + "[")]


def _gradebook(course: Course, cid: int) -> dict[str, Any]:
    usergrades = []
    for m in course.learners:
        items = []
        for q in course.quizzes:
            best = [a.score for a in course.quiz_attempts_for(m.user_id) if a.quiz_id == q.id]
            items.append(
                {
                    "itemmodule": "quiz",
                    "iteminstance": 1 + course.quizzes.index(q),
                    "cmid": quiz_cmid(course, q.id),
                    "graderaw": max(best) if best else None,
                    "grademax": q.max_score,
                }
            )
        usergrades.append(
            {"courseid": cid, "userid": user_number(course, m.user_id), "gradeitems": items}
        )
    return {"usergrades": usergrades, "warnings": []}


def _quizzes(course: Course) -> dict[str, Any]:
    return {
        "quizzes": [
            {
                "id": 1 + i,
                "coursemodule": quiz_cmid(course, q.id),
                "course": LMS_COURSE_ID,
                "name": q.title,
                "sumgrades": q.max_score,
                "grade": q.max_score,
            }
            for i, q in enumerate(course.quizzes)
        ],
        "warnings": [],
    }


def _attempts(course: Course, quiz_number: int, user: int) -> dict[str, Any]:
    quiz = course.quizzes[quiz_number - 1]
    member = next(m for m in course.members if user_number(course, m.user_id) == user)
    out = []
    for a in course.quiz_attempts_for(member.user_id):
        if a.quiz_id != quiz.id:
            continue
        out.append(
            {
                "id": 1000 + user * 10 + a.attempt + 100 * quiz_number,
                "quiz": quiz_number,
                "userid": user,
                "attempt": a.attempt,
                "state": "finished",
                "timefinish": int(a.finished_at.timestamp()),
                "timemodified": int(a.finished_at.timestamp()),
                "sumgrades": a.score,
            }
        )
    return {"attempts": out, "warnings": []}


def _assignments(course: Course) -> dict[str, Any]:
    top = sum(c.max_points for c in course.criteria)
    return {
        "courses": [
            {
                "id": LMS_COURSE_ID,
                "assignments": [
                    {
                        "id": ASSIGNMENT_ID,
                        "cmid": ASSIGNMENT_CMID,
                        "name": course.rubric_title,
                        "grade": top,
                    }
                ],
            }
        ],
        "warnings": [],
    }


def _grade_id(user: int) -> int:
    return 5000 + user


def _grades(course: Course) -> dict[str, Any]:
    grades = []
    for m in course.learners:
        results = course.rubric_results_for(m.user_id)
        if not results:
            continue
        points = 0.0
        for r in results:
            crit = next(c for c in course.criteria if c.id == r.criterion_id)
            points += next(lv.points for lv in crit.levels if lv.id == r.level_id)
        user = user_number(course, m.user_id)
        grades.append(
            {
                "id": _grade_id(user),
                "userid": user,
                "attemptnumber": 0,
                "timemodified": int(max(r.assessed_at for r in results).timestamp()),
                "grade": f"{points:.5f}",
            }
        )
    return {"assignments": [{"assignmentid": ASSIGNMENT_ID, "grades": grades}], "warnings": []}


def _definitions(course: Course) -> dict[str, Any]:
    criteria = [
        {
            "id": criterion_number(course, c.id),
            "description": c.title,
            "levels": [
                {
                    "id": _level_number(course, c.id, lv.id),
                    "score": lv.points,
                    "definition": lv.title,
                }
                for lv in c.levels
            ],
        }
        for c in course.criteria
    ]
    definition = {
        "id": RUBRIC_DEFINITION_ID,
        "method": "rubric",
        "name": course.rubric_title,
        "rubric": {"rubric_criteria": criteria},
    }
    return {
        "areas": [{"cmid": ASSIGNMENT_CMID, "activemethod": "rubric", "definitions": [definition]}],
        "warnings": [],
    }


def _instances(course: Course) -> dict[str, Any]:
    instances = []
    for m in course.learners:
        results = course.rubric_results_for(m.user_id)
        if not results:
            continue
        user = user_number(course, m.user_id)
        instances.append(
            {
                "id": 7000 + user,
                "itemid": _grade_id(user),
                "status": 1,
                "timemodified": int(max(r.assessed_at for r in results).timestamp()),
                "rubric": {
                    "criteria": [
                        {
                            "criterionid": criterion_number(course, r.criterion_id),
                            "levelid": _level_number(course, r.criterion_id, r.level_id),
                            "remark": "",
                        }
                        for r in results
                    ]
                },
            }
        )
    return {"instances": instances, "warnings": []}


@router.post("/webservice/rest/server.php")
async def rest_server(request: Request) -> Response:
    """Moodle's REST web-service endpoint, for the functions the tool's connector calls."""
    platform = request.app.state.platform
    course: Course = platform.course
    form = {k: str(v) for k, v in (await request.form()).items()}
    if not hmac.compare_digest(
        form.get("wstoken", "").encode(), ws_token(platform.config.issuer).encode()
    ):
        return _error("invalidtoken", "Invalid token - token not found")
    function = form.get("wsfunction", "")
    with _lock:
        _calls[function] = _calls.get(function, 0) + 1
    course_ids = {int(x) for x in _many(form, "courseids") if x.isdigit()}
    if function == "gradereport_user_get_grade_items":
        if form.get("courseid") != str(LMS_COURSE_ID):
            return _error("invalidrecord", "Can't find data record in database table course.")
        return JSONResponse(_gradebook(course, LMS_COURSE_ID))
    if function == "mod_quiz_get_quizzes_by_courses":
        return JSONResponse(_quizzes(course) if LMS_COURSE_ID in course_ids else {"quizzes": []})
    if function == "mod_quiz_get_user_attempts":
        quiz = int(form.get("quizid") or 0)
        if not 1 <= quiz <= len(course.quizzes):
            return _error("invalidrecord", "Can't find data record in database table quiz.")
        return JSONResponse(_attempts(course, quiz, int(form.get("userid") or 0)))
    if function == "mod_assign_get_assignments":
        if form.get("includenotenrolledcourses") != "1":
            # Moodle 5.1 withholds courses the service user is not enrolled in (the demo's
            # service user has system capabilities only), with a warning.
            return JSONResponse(
                {
                    "courses": [],
                    "warnings": [
                        {
                            "item": "course",
                            "itemid": cid,
                            "warningcode": "2",
                            "message": "User is not enrolled or does not have requested capability",
                        }
                        for cid in sorted(course_ids)
                    ],
                }
            )
        return JSONResponse(
            _assignments(course) if LMS_COURSE_ID in course_ids else {"courses": []}
        )
    if function == "mod_assign_get_grades":
        return JSONResponse(_grades(course))
    if function == "core_grading_get_definitions":
        return JSONResponse(_definitions(course))
    if function == "core_grading_get_gradingform_instances":
        return JSONResponse(_instances(course))
    return _error("accessexception", f"Access control exception ({function} is not in the service)")


@router.post(WEBHOOK_PATH)
async def webhook(request: Request) -> Response:
    """Receive the tool's credential webhooks (the demo's stand-in repository)."""
    await request.body()
    return Response(status_code=204)


def calls(function: str = "") -> int:
    """How often ``function`` (any function: "") was called so far in this process."""
    with _lock:
        return _calls.get(function, 0) if function else sum(_calls.values())
