"""The CSV parser alone: every malformed row names its line, column and why."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.sources import csvimport
from service.sources.types import SourceKind, Verification

HEADER = (
    "sub,kind,item_id,item_title,criterion_id,score,max_score,level_id,level_scale,"
    "attempt,submitted_at,verification\n"
)


def parse(body: str, header: str = HEADER) -> tuple[list, list]:
    return csvimport.parse((header + body).encode())


def test_valid_rows_become_results() -> None:
    results, problems = parse(
        "u-ada,quiz,cm7,Quiz 1,,8,10,,,2,2026-11-02T10:00:00+01:00,supervised\n"
        "u-ada,rubric_criterion,cm9,Essay,c1,,,L2,"
        '"L1:0:Not yet|L3:2:Proficient|L2:1:Developing",,,\n'
    )
    assert problems == []
    (w1, quiz), (w2, rub) = results
    assert (w1, w2) == ("line 2", "line 3")
    assert quiz.kind is SourceKind.QUIZ and quiz.score == 8 and quiz.max_score == 10
    assert quiz.attempt == 2 and quiz.verification is Verification.SUPERVISED
    assert quiz.submitted_at == dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
    assert quiz.origin == "csv"
    assert rub.level is not None
    assert (rub.level.id, rub.level.name, rub.level.points) == ("L2", "Developing", 1.0)
    # The scale is kept whole and ordered by points.
    assert [lv[0] for lv in rub.level.scale] == ["L1", "L2", "L3"]
    assert rub.verification is Verification.UNSUPERVISED  # conservative default


@pytest.mark.parametrize(
    ("row", "column", "reason"),
    [
        (",quiz,cm7,,,8,10,,,,,", "lms_user_id", "no learner given"),
        ("u,essay,cm7,,,8,10,,,,,", "kind", "'essay' is not one of"),
        ("u,,cm7,,,8,10,,,,,", "kind", "missing"),
        ("u,quiz,,,,8,10,,,,,", "item_id", "missing"),
        ("u,quiz,cm7,,,eight,10,,,,,", "score", "'eight' is not a number"),
        ("u,quiz,cm7,,,11,10,,,,,", "score", "outside 0..10"),
        ("u,quiz,cm7,,,8,,,,,,", "max_score", "needs the maximum"),
        ("u,quiz,cm7,,,8,0,,,,,", "max_score", "greater than 0"),
        ("u,quiz,cm7,,,,,,,,,", "score", "give score"),
        ("u,quiz,cm7,,,nan,10,,,,,", "score", "not a finite number"),
        ("u,quiz,cm7,,,8,10,,,0,,", "attempt", "from 1 up"),
        ("u,quiz,cm7,,,8,10,,,,2026-11-02T10:00:00,", "submitted_at", "no time zone"),
        ("u,quiz,cm7,,,8,10,,,,yesterday,", "submitted_at", "not an ISO 8601"),
        ("u,quiz,cm7,,,8,10,,,,,proctored", "verification", "'proctored' is not one of"),
        ("u,rubric_criterion,cm7,,,,,L1,,,,", "criterion_id", "names its criterion"),
        ("u,rubric_criterion,cm7,,c1,,,L9,L1:0:No|L2:1:Yes,,,", "level_id", "'L9' is not in"),
        ("u,rubric_criterion,cm7,,c1,,,L1,L1:zero:No,,,", "level_scale", "not a number"),
        ("u,rubric_criterion,cm7,,c1,,,L1,L1-0-No,,,", "level_scale", "id:points:name"),
        ("u,quiz,cm7,,,8", "row", "has 6 cells but the header has 12"),
    ],
)
def test_each_malformed_row_says_line_column_and_why(row: str, column: str, reason: str) -> None:
    results, problems = parse("u-ok,quiz,cm1,,,1,2,,,,,\n" + row + "\n")
    assert len(results) == 1  # the good row is still parsed
    [p] = problems
    assert p.where == "line 3"
    assert p.field == column
    assert reason in p.reason


def test_decimal_comma_and_bom_and_crlf_are_accepted() -> None:
    data = ("\ufeff" + HEADER + 'u,quiz,cm7,,,"7,5",10,,,,,\r\n').encode()
    results, problems = csvimport.parse(data)
    assert problems == []
    assert results[0][1].score == 7.5


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        (b"", "file", "empty"),
        (b"sub,kind,item_id\n\xff\xfe,quiz,1\n", "file", "not UTF-8"),
        (b"sub;kind;item_id\nu;quiz;1\n", "header", "commas, not ';'"),
        (b"sub,kind,item_id,grade\n", "grade", "unknown column"),
        (b"sub,kind,item_id,sub\n", "sub", "more than once"),
        (b"sub,item_id\n", "kind", "required column"),
        (b"kind,item_id,score\n", "lms_user_id|sub|email", "required column"),
    ],
)
def test_file_level_problems_reject_everything_on_line_1(
    data: bytes, field: str, reason: str
) -> None:
    results, problems = csvimport.parse(data)
    assert results == []
    [p] = problems
    assert (p.where, p.field) == ("line 1", field)
    assert reason in p.reason


def test_blank_lines_are_skipped_and_line_numbers_stay_true() -> None:
    results, problems = parse("u,quiz,cm1,,,1,2,,,,,\n\n,,,,,,,,,,,\nu,quiz,cm2,,,x,2,,,,,\n")
    assert [w for w, _ in results] == ["line 2"]
    assert [p.where for p in problems] == ["line 5"]


def test_a_row_with_several_bad_columns_reports_each() -> None:
    _results, problems = parse("u,quiz,cm7,,,21,20,,,0,2026-11-20T10:00:00,proctored\n")
    assert [(p.where, p.field) for p in problems] == [
        ("line 2", "score"),
        ("line 2", "attempt"),
        ("line 2", "submitted_at"),
        ("line 2", "verification"),
    ]


@given(st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
@settings(max_examples=300, deadline=None)
def test_any_input_gives_results_or_located_problems_never_an_exception(data: bytes) -> None:
    results, problems = csvimport.parse(data)
    for p in problems:
        assert p.where.startswith("line ") and p.reason
    assert all(w.startswith("line ") for w, _ in results)


@given(
    score=st.floats(min_value=0, max_value=1000, allow_nan=False),
    extra=st.floats(min_value=0, max_value=1000, allow_nan=False),
)
def test_valid_scores_round_trip(score: float, extra: float) -> None:
    top = score + extra if score + extra > 0 else 1.0
    results, problems = parse(f"u,quiz,cm7,,,{score!r},{top!r},,,,,\n")
    assert problems == []
    assert (results[0][1].score, results[0][1].max_score) == (score, top)
