"""Fake Moodle web services and Canvas REST API at the HTTP boundary (httpx.MockTransport).

Shapes follow the documentation, not our parser:
- Moodle: each function's ``execute_returns()`` in moodle/moodle (mod/quiz/classes/external,
  mod/assign/externallib.php, grade/grading/classes/external.php,
  enrol/externallib.php) and the REST server's error body {exception, errorcode, message}
  sent with HTTP 200 (webservice/rest/locallib.php).
- Canvas: https://canvas.instructure.com/doc/api/ Assignments, Submissions (rubric_assessment
  = {criterion_id: {points, rating_id, comments}}), Quiz Submissions ({quiz_submissions:
  [...]}), Users, Pagination (Link header), OAuth2 (refresh_token grant), Throttling
  (403 "Rate Limit Exceeded").

Faults are queued per call name: ``fail["mod_quiz_get_user_attempts"] = [503, 503]``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx


@dataclass
class FakeMoodle:
    token: str = "moodle-token"
    users: list[int] = field(default_factory=lambda: [42, 43])
    quizzes: list[dict[str, Any]] = field(default_factory=list)
    attempts: dict[tuple[int, int], list[dict[str, Any]]] = field(default_factory=dict)
    assigns: list[dict[str, Any]] = field(default_factory=list)
    grades: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    areas: list[dict[str, Any]] = field(default_factory=list)
    instances: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    fail: dict[str, list[int | dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    calls: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    forms: list[dict[str, str]] = field(default_factory=list)
    # the service user is not enrolled in the course (system capabilities, as
    # docs/evidence-sources.md sets it up): Moodle withholds such courses from
    # mod_assign_get_assignments unless includenotenrolledcourses=1, with a warning
    enrolled: bool = False
    warnings: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def sample(cls) -> FakeMoodle:
        """A course with one quiz, one rubric-graded assignment, two learners (42, 43)."""
        levels = [
            {"id": 11, "score": 0, "definition": "Not yet", "definitionformat": 1},
            {"id": 12, "score": 1, "definition": "Developing", "definitionformat": 1},
            {"id": 13, "score": 2, "definition": "Proficient", "definitionformat": 1},
        ]
        return cls(
            quizzes=[
                {
                    "id": 5,
                    "course": 2,
                    "coursemodule": 70,
                    "name": "Quiz 1",
                    "sumgrades": 10.0,
                    "grade": 100.0,
                }
            ],
            attempts={
                (5, 42): [
                    {
                        "id": 501,
                        "quiz": 5,
                        "userid": 42,
                        "attempt": 1,
                        "state": "finished",
                        "timestart": 1763900000,
                        "timefinish": 1763900600,
                        "timemodified": 1763900600,
                        "sumgrades": 6.0,
                        "preview": 0,
                    },
                    {
                        "id": 502,
                        "quiz": 5,
                        "userid": 42,
                        "attempt": 2,
                        "state": "finished",
                        "timestart": 1763990000,
                        "timefinish": 1763990600,
                        "timemodified": 1763990600,
                        "sumgrades": 9.5,
                        "preview": 0,
                    },
                ],
                (5, 43): [],
            },
            assigns=[{"id": 8, "cmid": 90, "course": 2, "name": "Essay", "grade": 4}],
            grades={
                8: [
                    {
                        "id": 300,
                        "assignment": 8,
                        "userid": 42,
                        "attemptnumber": 0,
                        "timecreated": 1763000000,
                        "timemodified": 1763500000,
                        "grader": 2,
                        "grade": "3.00000",
                    },
                    {
                        "id": 301,
                        "assignment": 8,
                        "userid": 43,
                        "attemptnumber": 0,
                        "timecreated": 1763000000,
                        "timemodified": 1763500000,
                        "grader": 2,
                        "grade": "-1.00000",
                    },
                ]
            },
            areas=[
                {
                    "cmid": 90,
                    "contextid": 77,
                    "component": "mod_assign",
                    "areaname": "submissions",
                    "activemethod": "rubric",
                    "definitions": [
                        {
                            "id": 3,
                            "method": "rubric",
                            "name": "Essay rubric",
                            "status": 20,
                            "rubric": {
                                "rubric_criteria": [
                                    {
                                        "id": 21,
                                        "sortorder": 1,
                                        "description": "Argument",
                                        "levels": levels,
                                    },
                                    {
                                        "id": 22,
                                        "sortorder": 2,
                                        "description": "Sources",
                                        "levels": [{**lv, "id": lv["id"] + 10} for lv in levels],
                                    },
                                ]
                            },
                        }
                    ],
                }
            ],
            instances={
                3: [
                    {
                        "id": 600,
                        "raterid": 2,
                        "itemid": 300,
                        "rawgrade": "3.0",
                        "status": 1,
                        "feedback": "",
                        "feedbackformat": 1,
                        "timemodified": 1763500000,
                        "rubric": {
                            "criteria": [
                                {
                                    "id": 1,
                                    "criterionid": 21,
                                    "levelid": 13,
                                    "remark": "good",
                                    "remarkformat": 1,
                                },
                                {
                                    "id": 2,
                                    "criterionid": 22,
                                    "levelid": 22,
                                    "remark": "",
                                    "remarkformat": 1,
                                },
                            ]
                        },
                    },
                    {
                        "id": 599,
                        "raterid": 2,
                        "itemid": 300,
                        "rawgrade": "1.0",
                        "status": 3,
                        "timemodified": 1763400000,
                        "rubric": {"criteria": [{"id": 3, "criterionid": 21, "levelid": 11}]},
                    },
                ]
            },
        )

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def usergrade(self, userid: int) -> dict[str, Any]:
        """The user's gradebook row; a quiz's grade is the best graded attempt (Moodle's
        default grading method), None when nothing is graded."""
        items = []
        for q in self.quizzes:
            marks = [
                a["sumgrades"]
                for a in self.attempts.get((q["id"], userid), [])
                if a.get("sumgrades") is not None
            ]
            items.append(
                {
                    "id": 900 + q["id"],
                    "itemname": q["name"],
                    "itemtype": "mod",
                    "itemmodule": "quiz",
                    "iteminstance": q["id"],
                    "cmid": q["coursemodule"],
                    "graderaw": max(marks) if marks else None,
                    "grademin": 0,
                    "grademax": q["grade"],
                }
            )
        return {
            "courseid": 2,
            "userid": userid,
            "userfullname": f"User {userid}",
            "maxdepth": 2,
            "gradeitems": items,
        }

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(str(request.url))
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        fn = form.get("wsfunction", "")
        self.calls.append(fn)
        self.forms.append(form)
        if self.fail.get(fn):
            fault = self.fail[fn].pop(0)
            if isinstance(fault, int):
                return httpx.Response(fault, text="<html>error</html>")
            return httpx.Response(200, json=fault)
        if form.get("wstoken") != self.token:
            return httpx.Response(
                200,
                json={
                    "exception": "moodle_exception",
                    "errorcode": "invalidtoken",
                    "message": "Invalid token - token not found",
                },
            )
        body = self.answer(fn, form)
        if isinstance(body, dict) and fn in self.warnings:
            body["warnings"] = body.get("warnings", []) + self.warnings[fn]
        return httpx.Response(200, json=body)

    def answer(self, fn: str, form: dict[str, str]) -> Any:
        if fn == "gradereport_user_get_grade_items":
            assert form["userid"] == "0"
            return {"usergrades": [self.usergrade(u) for u in self.users], "warnings": []}
        if fn == "mod_quiz_get_quizzes_by_courses":
            return {"quizzes": self.quizzes, "warnings": []}
        if fn == "mod_quiz_get_user_attempts":
            key = (int(form["quizid"]), int(form["userid"]))
            return {"attempts": self.attempts.get(key, []), "warnings": []}
        if fn == "mod_assign_get_assignments":
            if not self.enrolled and form.get("includenotenrolledcourses") != "1":
                # mod/assign/externallib.php get_assignments, Moodle 5.1
                return {
                    "courses": [],
                    "warnings": [
                        {
                            "item": "course",
                            "itemid": 2,
                            "warningcode": "2",
                            "message": "User is not enrolled or does not have requested capability",
                        }
                    ],
                }
            return {
                "courses": [{"id": 2, "fullname": "C", "assignments": self.assigns}],
                "warnings": [],
            }
        if fn == "mod_assign_get_grades":
            ids = [int(v) for k, v in form.items() if k.startswith("assignmentids[")]
            since = int(form.get("since", "0"))  # grades modified at or after it
            return {
                "assignments": [
                    {
                        "assignmentid": i,
                        "grades": [g for g in self.grades.get(i, []) if g["timemodified"] >= since],
                    }
                    for i in ids
                ],
                "warnings": [],
            }
        if fn == "core_grading_get_definitions":
            assert form["areaname"] == "submissions"
            return {"areas": self.areas, "warnings": []}
        if fn == "core_grading_get_gradingform_instances":
            since = int(form.get("since", "0"))
            found = self.instances.get(int(form["definitionid"]), [])
            return {"instances": [i for i in found if i["timemodified"] >= since], "warnings": []}
        return {
            "exception": "webservice_access_exception",
            "errorcode": "accessexception",
            "message": f"Access control exception ({fn})",
        }


@dataclass
class FakeCanvas:
    """Canvas at https://canvas.test with one course (id 7)."""

    access_token: str = "canvas-at-1"
    refresh_token: str = "canvas-rt"
    page_size: int = 2
    users: list[dict[str, Any]] = field(default_factory=list)
    assignments: list[dict[str, Any]] = field(default_factory=list)
    submissions: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    quiz_submissions: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    fail: dict[str, list[int | httpx.Response]] = field(default_factory=lambda: defaultdict(list))
    next_host: str = "canvas.test"
    refreshes: int = 0
    refresh_ok: bool = True
    calls: list[str] = field(default_factory=list)

    @classmethod
    def sample(cls) -> FakeCanvas:
        ratings = [
            {"id": "r3", "points": 2.0, "description": "Proficient", "long_description": ""},
            {"id": "r2", "points": 1.0, "description": "Developing", "long_description": ""},
            {"id": "r1", "points": 0.0, "description": "Not yet", "long_description": ""},
        ]
        return cls(
            users=[
                {
                    "id": 1001,
                    "name": "Ada",
                    "sortable_name": "Lovelace, Ada",
                    "email": "ada@example.edu",
                },
                {"id": 1002, "name": "Bob", "sortable_name": "B, Bob", "email": None},
                {"id": 1003, "name": "Cy", "sortable_name": "C, Cy"},
            ],
            assignments=[
                {
                    "id": 31,
                    "name": "Essay",
                    "points_possible": 4.0,
                    "published": True,
                    "grading_type": "points",
                    "rubric_settings": {"id": 9, "title": "Essay rubric", "points_possible": 4},
                    "rubric": [
                        {"id": "_c1", "points": 2.0, "description": "Argument", "ratings": ratings},
                        {"id": "_c2", "points": 2.0, "description": "Sources", "ratings": ratings},
                    ],
                },
                {
                    "id": 32,
                    "name": "Quiz A",
                    "points_possible": 10.0,
                    "published": True,
                    "is_quiz_assignment": True,
                    "quiz_id": 40,
                },
                {"id": 33, "name": "Draft", "points_possible": 5.0, "published": False},
            ],
            submissions={
                31: [
                    {
                        "id": 1,
                        "assignment_id": 31,
                        "user_id": 1001,
                        "score": 3.0,
                        "attempt": 1,
                        "submitted_at": "2026-11-10T09:00:00Z",
                        "graded_at": "2026-11-12T10:00:00Z",
                        "workflow_state": "graded",
                        "excused": False,
                        "rubric_assessment": {
                            "_c1": {"points": 2.0, "rating_id": "r3", "comments": ""},
                            "_c2": {"points": 1.0, "rating_id": "r2", "comments": "cite more"},
                        },
                    },
                    {
                        "id": 2,
                        "assignment_id": 31,
                        "user_id": 1002,
                        "score": 1.0,
                        "attempt": 1,
                        "submitted_at": "2026-11-10T09:00:00Z",
                        "graded_at": "2026-11-12T10:00:00Z",
                        "workflow_state": "graded",
                        "excused": False,
                        "rubric_assessment": {
                            "_c1": {"points": 1.0, "rating_id": "r2", "comments": ""}
                        },
                    },
                    {
                        "id": 3,
                        "assignment_id": 31,
                        "user_id": 1003,
                        "score": None,
                        "attempt": None,
                        "workflow_state": "unsubmitted",
                    },
                ],
                32: [
                    {
                        "id": 4,
                        "assignment_id": 32,
                        "user_id": 1001,
                        "score": 8.0,
                        "attempt": 2,
                        "workflow_state": "graded",
                        "graded_at": "2026-11-13T10:00:00Z",
                    }
                ],
            },
            quiz_submissions={
                40: [
                    {
                        "id": 70,
                        "quiz_id": 40,
                        "user_id": 1001,
                        "submission_id": 4,
                        "attempt": 2,
                        "score": 8.0,
                        "kept_score": 8.0,
                        "quiz_points_possible": 10.0,
                        "started_at": "2026-11-13T09:00:00Z",
                        "finished_at": "2026-11-13T09:30:00Z",
                        "workflow_state": "complete",
                    },
                    {
                        "id": 71,
                        "quiz_id": 40,
                        "user_id": 1002,
                        "attempt": 1,
                        "score": None,
                        "quiz_points_possible": 10.0,
                        "workflow_state": "pending_review",
                    },
                ]
            },
        )

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def _page(self, request: httpx.Request, items: list[Any], wrap: str = "") -> httpx.Response:
        page = int(request.url.params.get("page", "1"))
        chunk = items[(page - 1) * self.page_size : page * self.page_size]
        headers = {}
        if page * self.page_size < len(items):
            params = dict(request.url.params) | {"page": str(page + 1)}
            nxt = request.url.copy_with(host=self.next_host).copy_merge_params(params)
            headers["Link"] = f'<{nxt}>; rel="next", <{request.url}>; rel="current"'
        body = {wrap: chunk} if wrap else chunk
        return httpx.Response(
            200, headers=headers, content=json.dumps(body).encode(), extensions={}
        )

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = urlsplit(str(request.url)).path
        self.calls.append(f"{request.method} {path}?{request.url.query.decode()}")
        if path == "/login/oauth2/token":
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            assert form["grant_type"] == "refresh_token"
            if not self.refresh_ok or form["refresh_token"] != self.refresh_token:
                return httpx.Response(400, json={"error": "invalid_grant"})
            self.refreshes += 1
            self.access_token = f"canvas-at-{self.refreshes + 1}"
            return httpx.Response(
                200,
                json={
                    "access_token": self.access_token,
                    "token_type": "Bearer",
                    "expires_in": 3600,
                },
            )
        if self.fail.get(path):
            fault = self.fail[path].pop(0)
            return fault if isinstance(fault, httpx.Response) else httpx.Response(fault)
        if request.headers.get("authorization") != f"Bearer {self.access_token}":
            return httpx.Response(
                401,
                headers={"WWW-Authenticate": 'Bearer realm="canvas-lms"'},
                json={"errors": [{"message": "Invalid access token."}]},
            )
        parts = path.strip("/").split("/")
        if parts[:4] != ["api", "v1", "courses", "7"]:
            return httpx.Response(
                404, json={"errors": [{"message": "The specified resource does not exist."}]}
            )
        rest = parts[4:]
        if rest == ["users"]:
            assert request.url.params.get_list("include[]") == ["email"]
            return self._page(request, self.users)
        if rest == ["assignments"]:
            return self._page(request, self.assignments)
        if rest == ["students", "submissions"]:
            # List submissions for multiple assignments: graded at or after graded_since
            assert request.url.params.get_list("student_ids[]") == ["all"]
            assert "rubric_assessment" in request.url.params.get_list("include[]")
            since = dt.datetime.fromisoformat(request.url.params["graded_since"])
            subs = [
                s
                for group in self.submissions.values()
                for s in group
                if s.get("graded_at")
                and dt.datetime.fromisoformat(s["graded_at"].replace("Z", "+00:00")) >= since
            ]
            return self._page(request, subs)
        if len(rest) == 3 and rest[0] == "assignments" and rest[2] == "submissions":
            assert "rubric_assessment" in request.url.params.get_list("include[]")
            subs = self.submissions.get(int(rest[1]), [])
            return self._page(request, subs)
        if len(rest) == 3 and rest[0] == "quizzes" and rest[2] == "submissions":
            return self._page(
                request, self.quiz_submissions.get(int(rest[1]), []), wrap="quiz_submissions"
            )
        return httpx.Response(404, json={"errors": [{"message": "not found"}]})
