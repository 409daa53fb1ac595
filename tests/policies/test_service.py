"""Policies in the database: versions, bounds, effective policies, decisions, import/export."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from service.assessment import canonical, parse
from service.assessment import engine as rules
from service.assessment.types import Evidence, Level
from service.db.engine import session as db_session
from service.db.models import AuditEvent, Competency, Course, Decision, EffectivePolicy
from service.errors import BadInput, Conflict, NotFound
from service.flows import wiring
from service.policies import institution
from service.policies import repository as policies_repo
from service.policies import service as policies
from tests import factories
from tests.assessment.build import NOW, ev

DEFAULTS: dict[str, Any] = {
    "levels": {
        "beginning": "50%",
        "intermediate": "65%",
        "advanced": {"threshold": "85%", "verification": "supervised-online-verified"},
    },
    "max_attempts": 3,
}
BOUNDS: dict[str, Any] = {
    "levels": {
        "intermediate": {"threshold": {"min": "60%", "max": "80%"}},
        "advanced": {"verification": "supervised"},
    },
    "max_attempts": {"max": 5},
}


@pytest.fixture
def session(engine: Engine) -> Any:
    with db_session(engine, write=True) as s:
        yield s


def setup_course(session: Session) -> tuple[Course, Competency]:
    plat = factories.platform(session)
    course = factories.course(session, factories.deployment(session, plat))
    stats = policies.create_competency(
        session,
        author="cli",
        key="stats",
        name="Statistical reasoning",
        level_descriptions={"beginning": "Reads a chart"},
        framework_name="ESCO",
        framework_url="https://esco.ec.europa.eu/skill/x",
        framework_code="S1.2",
    )
    policies.save_institution(session, defaults=DEFAULTS, bounds=BOUNDS, author="cli")
    return course, stats


def test_catalogue(session: Session) -> None:
    setup_course(session)
    assert policies.competency(session, "stats").framework_code == "S1.2"
    with pytest.raises(Conflict):
        policies.create_competency(session, author="cli", key="stats", name="Again")
    with pytest.raises(BadInput, match="key: 'has space'"):
        policies.create_competency(session, author="cli", key="has space", name="x")
    with pytest.raises(BadInput, match="name: is required"):
        policies.create_competency(session, author="cli", key="x", name=" ")
    with pytest.raises(BadInput, match="expert is not a level"):
        policies.create_competency(
            session, author="cli", key="x", name="X", level_descriptions={"expert": ""}
        )
    with pytest.raises(BadInput, match="framework_url: must be an http"):
        policies.create_competency(
            session, author="cli", key="x", name="X", framework_url="ftp://x"
        )
    with pytest.raises(NotFound):
        policies.competency(session, "nope")
    updated = policies.update_competency(session, author="cli", key="stats", name="Statistics")
    assert updated.name == "Statistics"
    with pytest.raises(BadInput, match="name: must not be empty"):
        policies.update_competency(session, author="cli", key="stats", name="")


def test_level_templates(session: Session) -> None:
    _, stats = setup_course(session)
    row = policies.set_level_template(
        session,
        author="cli",
        competency_row=stats,
        level="advanced",
        validity_days=730,
        workload_hours=30,
        ects_credits=1,
        eqf_level=6,
        iscedf_code="0542",
        language="de",
    )
    again = policies.set_level_template(
        session, author="cli", competency_row=stats, level="advanced", eqf_level=7
    )
    assert again.id == row.id and again.eqf_level == 7 and again.language == "de"
    for kw, message in [
        ({"level": "expert"}, "level: 'expert'"),
        ({"level": "advanced", "eqf_level": 9}, "eqf_level: must be 1 to 8"),
        ({"level": "advanced", "iscedf_code": "05x"}, "iscedf_code"),
        ({"level": "advanced", "validity_days": 0}, "validity_days: must be more than 0"),
    ]:
        with pytest.raises(BadInput, match=message):
            policies.set_level_template(session, author="cli", competency_row=stats, **kw)


def test_institution_versions_and_validation(session: Session) -> None:
    setup_course(session)
    second = policies.save_institution(
        session, defaults=DEFAULTS, bounds={}, author="cli", note="no bounds"
    )
    assert second.version == 2
    events = session.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all()
    assert [(e.actor, e.action, e.subject, e.detail) for e in events][-1] == (
        "cli",
        "policy.saved",
        "policy:institution",
        {"version": 2, "note": "no bounds"},
    )
    with pytest.raises(BadInput) as caught:
        policies.save_institution(
            session, defaults={"levels": {"beginning": "x"}}, bounds={}, author="cli"
        )
    assert caught.value.detail.startswith("defaults.levels.beginning: ")
    with pytest.raises(BadInput, match=r"^bounds\.levels\.expert: "):
        policies.save_institution(
            session, defaults=DEFAULTS, bounds={"levels": {"expert": {}}}, author="cli"
        )
    with pytest.raises(BadInput, match=r"^defaults\.max_attempts: attempts 3 is above"):
        policies.save_institution(
            session, defaults=DEFAULTS, bounds={"max_attempts": {"max": 2}}, author="cli"
        )
    with pytest.raises(BadInput, match=r"defaults\.levels: define at least one"):
        policies.save_institution(session, defaults={"max_attempts": 2}, bounds={}, author="cli")


def test_no_institution_policy_yet(session: Session) -> None:
    with pytest.raises(NotFound, match="no institution policy"):
        policies.institution_layers(session)


def test_overrides_are_checked_against_the_bounds(session: Session) -> None:
    course, stats = setup_course(session)
    assert course.id is not None
    with pytest.raises(BadInput) as caught:
        policies.save_course_override(
            session,
            course_id=course.id,
            document={"levels": {"intermediate": "55%"}, "max_attempts": 9},
            author="person:1",
        )
    assert caught.value.detail == (
        "document.levels.intermediate.threshold: the Intermediate threshold 55% is below the "
        "minimum the institution allows (60% to 80%); attempts 9 is above the maximum the "
        "institution allows (at most 5)"
    )
    with pytest.raises(BadInput, match=r"document\.levels\.advanced\.verification: Advanced must"):
        policies.save_competency_override(
            session,
            course_id=course.id,
            competency_row=stats,
            document={"levels": {"advanced": {"verification": "authenticated"}}},
            author="person:1",
        )
    with pytest.raises(BadInput, match=r"document\.treshold: unknown field"):
        policies.save_course_override(
            session, course_id=course.id, document={"treshold": 1}, author="person:1"
        )
    with pytest.raises(BadInput, match=r"document\.competency: this is the policy for 'stats'"):
        policies.save_competency_override(
            session,
            course_id=course.id,
            competency_row=stats,
            document={"competency": "other"},
            author="person:1",
        )


def test_a_course_override_must_keep_competency_overrides_in_bounds(session: Session) -> None:
    course, stats = setup_course(session)
    assert course.id is not None
    policies.save_competency_override(
        session,
        course_id=course.id,
        competency_row=stats,
        document={"levels": {"intermediate": {"threshold": "60%"}}},
        author="person:1",
    )
    # 60% intermediate with a course-wide beginning of 62% would put Intermediate below
    # Beginning for stats: refused, naming the competency.
    with pytest.raises(BadInput, match=r"^competencies\.stats\.levels\.intermediate\.threshold"):
        policies.save_course_override(
            session, course_id=course.id, document={"levels": {"beginning": "62%"}}, author="p"
        )


def test_a_bounds_change_that_breaks_a_course_is_refused_with_the_course(
    session: Session,
) -> None:
    # The instructor set Intermediate to 70% within the bounds (60% to 80%) ...
    course, stats = setup_course(session)
    assert course.id is not None
    policies.save_competency_override(
        session,
        course_id=course.id,
        competency_row=stats,
        document={"levels": {"intermediate": {"threshold": "70%"}}},
        author="person:1",
    )
    # ... then the administrator narrows Intermediate to at most 66%: refused, nothing saved.
    narrowed = {
        **BOUNDS,
        "levels": {**BOUNDS["levels"], "intermediate": {"threshold": {"max": "66%"}}},
    }
    with pytest.raises(BadInput) as caught:
        policies.save_institution(session, defaults=DEFAULTS, bounds=narrowed, author="cli")
    assert caught.value.code == "policy_conflict"
    assert caught.value.detail == (
        "the new institution policy does not fit 1 course rule(s) in use: "
        f"course {course.title or course.context_id!r} (id {course.id}), stats: "
        "levels.intermediate.threshold: the Intermediate threshold 70% is above the maximum "
        "the institution allows (at most 66%)"
    )
    assert caught.value.hint is not None and "Nothing was saved" in caught.value.hint
    row, _, _ = policies.institution_layers(session)
    assert row.version == 1
    policy, _ = policies.effective(session, course_id=course.id, competency_row=stats)
    assert policy.ladder[1][1].threshold == 0.7
    # Bounds that every course fits are accepted.
    wider = {
        **BOUNDS,
        "levels": {**BOUNDS["levels"], "intermediate": {"threshold": {"max": "75%"}}},
    }
    assert (
        policies.save_institution(session, defaults=DEFAULTS, bounds=wider, author="cli").version
        == 2
    )


def test_effective_policies_are_numbered_and_reused(session: Session) -> None:
    course, stats = setup_course(session)
    assert course.id is not None
    policy, first = policies.effective(session, course_id=course.id, competency_row=stats)
    assert (first.version, policy.version, policy.competency) == (1, 1, "stats")
    assert first.layers == {"institution": 1}
    _, same = policies.effective(session, course_id=course.id, competency_row=stats)
    assert same.id == first.id
    policies.save_course_override(
        session, course_id=course.id, document={"aggregation": "highest"}, author="p"
    )
    policies.save_competency_override(
        session,
        course_id=course.id,
        competency_row=stats,
        document={"levels": {"intermediate": "70%"}},
        author="p",
    )
    policy, second = policies.effective(session, course_id=course.id, competency_row=stats)
    assert second.version == 2
    assert second.layers == {"institution": 1, "course": 1, "course_competency": 1}
    assert policy.levels[Level.INTERMEDIATE].threshold == 0.7
    assert second.document["aggregation"] == "highest"
    # back to the first rules: the first number again
    policies.save_competency_override(
        session, course_id=course.id, competency_row=stats, document={}, author="p"
    )
    policies.save_course_override(session, course_id=course.id, document={}, author="p")
    _, back = policies.effective(session, course_id=course.id, competency_row=stats)
    assert back.id == first.id


def test_the_effective_policy_is_built_once_per_version(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each evaluation asks for the effective policy: the layers are read, but parsed,
    composed, bound-checked and hashed once per set of layers, and the typed value of a
    numbered version is built once and handed out again (issue #15, item 7)."""
    from service.assessment import parse

    course, stats = setup_course(session)
    assert course.id is not None
    # From empty caches: what earlier tests in this process built must not count (alone, or
    # after other tests under pytest-xdist, they would otherwise be another test's rules).
    monkeypatch.setattr(policies, "_composed_cache", {})
    monkeypatch.setattr(policies, "_versioned_cache", {})
    built: list[str] = []
    real_compose, real_read = parse.compose, parse.read_policy

    def compose(*layers: Any) -> Any:
        built.append("compose")
        return real_compose(*layers)

    def read(*args: Any, **kwargs: Any) -> Any:
        built.append("read")
        with monkeypatch.context() as inside:  # reading composes its one layer: part of "read"
            inside.setattr(parse, "compose", real_compose)
            return real_read(*args, **kwargs)

    monkeypatch.setattr(parse, "compose", compose)
    monkeypatch.setattr(parse, "read_policy", read)
    policy, row = policies.effective(session, course_id=course.id, competency_row=stats)
    again, same = policies.effective(session, course_id=course.id, competency_row=stats)
    assert again is policy and same.id == row.id
    assert built == ["compose", "read"]  # the layers composed once, the version read once
    # new rules: composed and numbered anew, and the typed value says so
    policies.save_competency_override(
        session,
        course_id=course.id,
        competency_row=stats,
        document={"levels": {"intermediate": "70%"}},
        author="p",
    )
    changed, second = policies.effective(session, course_id=course.id, competency_row=stats)
    assert changed is not policy and second.version == row.version + 1
    assert changed.levels[Level.INTERMEDIATE].threshold == 0.7
    assert changed.version == second.version


def test_decisions_are_stored_explained_and_reproduced(session: Session) -> None:
    course, stats = setup_course(session)
    assert course.id is not None
    learner = factories.person(session, factories.platform(session, client_id="c2"))
    assert learner.id is not None
    policy, effective_row = policies.effective(session, course_id=course.id, competency_row=stats)
    evidence = [
        ev("q1", 70, competency="stats", attempt=1),
        ev("q1", 90, competency="stats", attempt=2),
    ]
    decision = rules.evaluate(evidence, policy, NOW)
    values = policies_repo.decision_values(  # as an evaluation batch stores it
        decision=decision,
        evidence_hash=canonical.evidence_hash(evidence),
        person_id=learner.id,
        course_id=course.id,
        competency_row=stats,
        effective_row=effective_row,
    )
    row = Decision(**values)
    session.add(row)
    session.flush()
    assert (row.level, row.policy_version) == ("intermediate", 1)
    assert len(row.evidence_hash) == 64 and row.evaluated_at == NOW
    explained = policies.explain(session, decision_id=row.id or 0)
    assert explained["policy"]["levels"]["advanced"]["verification"] == "supervised-online-verified"
    assert explained["decision"]["failed"] == [
        "Advanced needs a supervised, identity-verified sitting; your q1 attempt 2 was "
        "unsupervised."
    ]
    assert explained["evidence_hash"] == row.evidence_hash
    assert _reproduces(session, row, list(reversed(evidence)))
    assert not _reproduces(session, row, evidence[:1])
    with pytest.raises(NotFound):
        policies.explain(session, decision_id=999)


def _reproduces(session: Session, row: Decision, evidence: list[Evidence]) -> bool:
    """Whether ``evidence`` is what the stored decision was made from and, evaluated again
    with the stored policy at the stored time, gives the same decision: what the decision
    records is enough to reproduce it."""
    if canonical.evidence_hash(evidence) != row.evidence_hash:
        return False
    policy_row = session.get(EffectivePolicy, row.effective_policy_id)
    assert policy_row is not None
    policy = parse.read_policy(policy_row.document | {"version": policy_row.version})
    again = rules.evaluate(evidence, policy, row.evaluated_at)
    return canonical.decision_to_dict(again) == row.reasons


def test_export_and_import_round_trip(session: Session) -> None:
    course, stats = setup_course(session)
    assert course.id is not None
    policies.save_course_override(
        session, course_id=course.id, document={"aggregation": "average"}, author="p"
    )
    policies.save_competency_override(
        session, course_id=course.id, competency_row=stats, document={"max_attempts": 2}, author="p"
    )
    exported = policies.export_course(session, course_id=course.id)
    assert exported["course"] == {"aggregation": "average"}
    assert exported["policies"] == {"stats": {"max_attempts": 2}}
    text = yaml.safe_dump(exported | {"policies": {"stats": {"max_attempts": 4}}})
    saved = policies.import_course(session, course_id=course.id, text=text, author="p")
    assert [(r.scope, r.version) for r in saved] == [("course", 2), ("course_competency", 2)]
    policy, _ = policies.effective(session, course_id=course.id, competency_row=stats)
    assert policy.max_attempts == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "policies: {stats: {max_attempts: 9}}\n",
            'line 1, field "policies.stats.max_attempts": attempts 9',
        ),
        ("policies:\n  nope: {}\n", "line 2, field \"policies.nope\": no competency 'nope'"),
        (
            "defaults: {levels: {beginning: 10%}}\n",
            'line 1, field "defaults": differs from the institution',
        ),
        ("policies: [\n", "not valid YAML"),
        ("- 1\n", "must be a mapping"),
        ("policies: 3\n", "must be a list of policies or a mapping"),
    ],
)
def test_import_errors_point_at_the_line(session: Session, text: str, message: str) -> None:
    course, _ = setup_course(session)
    with pytest.raises(BadInput) as caught:
        policies.import_course(session, course_id=course.id or 0, text=text, author="p")
    assert message in caught.value.detail


def test_a_course_file_exported_before_the_thresholds_page_saved_still_imports(
    session: Session,
) -> None:
    """The admin page rewrites the same rules in canonical spelling ("beginning: 50%" as
    "beginning: {threshold: 50%}"); a course file exported before that was refused as if
    its institution part had changed. Only a real difference is refused, and named."""
    course, _ = setup_course(session)
    assert course.id is not None
    exported = policies.export_course(session, course_id=course.id)
    _, rows = institution.form(session)
    defaults, bounds = institution.edit(session, rows)  # the page saved unchanged
    assert defaults != DEFAULTS
    policies.save_institution(session, defaults=defaults, bounds=bounds, author="admin")
    spelt = {  # the same bounds as BOUNDS, in other words the readers accept
        "bands": {
            "Intermediate": {"threshold": {"from": 60, "to": 0.8}},
            "advanced": {"min_verification": "supervised"},
        },
        "Attempts": {"at_most": 5},
    }
    text = yaml.safe_dump(exported | {"bounds": spelt, "policies": {"stats": {"max_attempts": 4}}})
    [saved] = policies.import_course(session, course_id=course.id, text=text, author="p")
    assert saved.document == {"max_attempts": 4}
    for part, changed, message in (
        (
            "defaults",
            DEFAULTS | {"levels": {**DEFAULTS["levels"], "beginning": "55%"}, "n": 2},
            "differs from the institution's: levels.beginning.threshold is 55% in the file, "
            "50% in force; n is 2 in the file, not set in force; only an administrator",
        ),
        (
            "bounds",
            BOUNDS | {"max_attempts": {"max": 6}},
            "differs from the institution's: max_attempts.max is 6 in the file, 5 in force;",
        ),
        ("bounds", {"levels": {"expert": {}}}, "field \"bounds.levels.expert\": 'expert' is not"),
    ):
        with pytest.raises(BadInput) as caught:
            policies.import_course(
                session, course_id=course.id, text=yaml.safe_dump({part: changed}), author="p"
            )
        assert message in caught.value.detail


def test_the_instructor_setup_stores_and_shows_a_threshold_as_typed(session: Session) -> None:
    """The setup page rounded a typed threshold to four decimals (the admin page stores it
    as typed) and showed it truncated to two, so saving the page unchanged moved it."""
    course, stats = setup_course(session)
    assert course.id is not None
    policies.attach(session, course_id=course.id, competency_row=stats)
    assert institution.percent_text("66.66667", "x") == "66.66667%"
    assert (
        institution.percent_text("0.7", "x") == "70%" and institution.percent_text(" ", "x") is None
    )
    wiring.save_competency_setup(
        session,
        course_id=course.id,
        competency_key="stats",
        items=[],
        thresholds={"intermediate": "66.666"},
        actor="p",
    )
    [setup] = wiring.course_competencies(session, course_id=course.id)
    assert setup.thresholds == {"beginning": "50%", "intermediate": "66.666%", "advanced": "85%"}


def test_institution_import_and_export(session: Session) -> None:
    setup_course(session)
    text = yaml.safe_dump({"defaults": DEFAULTS | {"max_attempts": 4}, "bounds": BOUNDS})
    row = policies.import_institution(session, text=text, author="cli")
    assert (
        row.version == 2 and policies.export_institution(session)["defaults"]["max_attempts"] == 4
    )
    for bad, message in [
        ("bounds: {}\n", "give 'defaults'"),
        (
            "defaults: {levels: {beginning: 50%}}\npolicies: {}\n",
            'field "policies": an institution file',
        ),
        ("defaults:\n  levels:\n    beginning: x\n", 'line 3, field "defaults.levels.beginning"'),
    ]:
        with pytest.raises(BadInput) as caught:
            policies.import_institution(session, text=bad, author="cli")
        assert message in caught.value.detail
