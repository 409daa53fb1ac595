"""The learner's "where it went" partial renders each state and escapes names."""

from __future__ import annotations

import datetime as dt

from service.delivery.status import LABELS, Destination
from service.web.templating import env


def _dest(state: str, consent: str = "not_needed", name: str = "Credly") -> Destination:
    return Destination(
        repository_id=1,
        repository_uuid="u",
        name=name,
        kind="credly",
        state=state,
        label=LABELS[state],
        consent=consent,
        delivered_at=dt.datetime(2026, 11, 28, tzinfo=dt.UTC) if state == "delivered" else None,
        detail=None,
    )


def test_partial_renders_states_and_consent_form() -> None:
    html = env.get_template("delivery/_destinations.html").render(
        destinations=[
            _dest("delivered"),
            _dest("waiting_for_consent", "asked", name="<b>Evil</b>"),
            _dest("failed"),
        ],
        consent_action="/learner/consent",
    )
    assert "Delivered" in html and "Since 28 Nov 2026" in html
    assert "Waiting for your consent" in html and 'action="/learner/consent"' in html
    assert "&lt;b&gt;Evil&lt;/b&gt;" in html and "<b>Evil</b>" not in html
    assert "the administrator has been told" in html


def test_partial_without_destinations() -> None:
    html = env.get_template("delivery/_destinations.html").render(destinations=[])
    assert "not sent to any other service" in html
