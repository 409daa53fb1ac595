"""The level template a worker batch issues from: built once per competency and level in a
transaction, and built again when the competency reads differently."""

from __future__ import annotations

from sqlalchemy import Engine

from service.db.engine import session
from service.flows import issuing
from service.settings import Settings
from tests import factories


def test_a_level_template_is_built_once_per_transaction_until_its_competency_changes(
    engine: Engine, settings: Settings
) -> None:
    with session(engine) as s:
        comp = factories.competency(s, "stats", name="Statistics")
        first = issuing._template(s, settings, comp, "advanced", stackable=False)
        assert issuing._template(s, settings, comp, "advanced", stackable=False) is first
        other = issuing._template(s, settings, comp, "advanced", stackable=True)
        assert other.eu.integration_stackability == "stackable"
        assert first.eu.integration_stackability == "stand-alone"
        comp.name = "Applied statistics"
        comp.level_descriptions = {"advanced": "Designs and analyses studies"}
        changed = issuing._template(s, settings, comp, "advanced", stackable=False)
        assert changed.competency_name == "Applied statistics"
        assert changed.eu.learning_outcomes == ("Designs and analyses studies",)
        assert first.competency_name == "Statistics"
