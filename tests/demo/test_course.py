"""The sample course holds together: results point at real people, criteria, levels, quizzes."""

from __future__ import annotations

from service.demo.course import sample_course


def test_sample_course_is_consistent() -> None:
    course = sample_course()
    assert course.title == "Data Literacy 101"
    assert len(course.instructors) == 1 and len(course.learners) == 5
    assert len({m.user_id for m in course.members}) == len(course.members)
    assert len({m.email for m in course.members}) == len(course.members)
    levels = {c.id: {lvl.id for lvl in c.levels} for c in course.criteria}
    assert len(levels) == 3 and all(len(v) >= 3 for v in levels.values())
    for r in course.rubric_results:
        member = course.member(r.user_id)
        assert member is not None and member.role == "learner"
        assert r.level_id in levels[r.criterion_id]
    quizzes = {q.id: q for q in course.quizzes}
    assert len(quizzes) == 2
    for a in course.quiz_attempts:
        assert course.member(a.user_id) is not None
        assert 0 <= a.score <= quizzes[a.quiz_id].max_score
    # Attempts are numbered 1..n per learner and quiz, later attempts later in time.
    for user in {a.user_id for a in course.quiz_attempts}:
        for quiz in quizzes:
            mine = [a for a in course.quiz_attempts_for(user) if a.quiz_id == quiz]
            assert [a.attempt for a in mine] == list(range(1, len(mine) + 1))
            assert [a.finished_at for a in mine] == sorted(a.finished_at for a in mine)


def test_sample_course_spans_the_cases_later_features_show() -> None:
    course = sample_course()
    with_results = {r.user_id for r in course.rubric_results}
    assert [m.user_id for m in course.learners if m.user_id not in with_results] == ["u-learn-5"]
    retakes = [a for a in course.quiz_attempts if a.attempt > 1]
    assert retakes, "someone improves over attempts"
    assert {a.supervised for a in course.quiz_attempts} == {True, False}
