"""Repository providers behind one registry: each provider is one module of
``service.delivery.providers``, and adding one needs no other change (issue #15 item 5)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from service.db.engine import session as db_session
from service.delivery import awards, providers, repositories, status
from service.delivery.worker import Worker, build_connectors
from service.errors import BadInput
from tests import factories
from tests.delivery.conftest import drain, provider_module, snapshot

FAX = """
from service.delivery.types import Provider


class FaxConnector:
    kinds = frozenset({"fax.send", "fax.withdraw"})

    def deliver(self, job, repo, record):
        record.note(f"{job.kind} to {repo.config['number']}")
        return {"pages": 1}


class FaxProvider(Provider):
    kind = "fax"
    title = "Fax"
    issue_kind = "fax.send"
    revoke_kind = "fax.withdraw"

    def check_config(self, config):
        if not config.get("number"):
            from service.errors import BadInput

            raise BadInput("a fax repository needs config.number")
        return config

    def connector(self, deps):
        return FaxConnector()


PROVIDER = FaxProvider()
"""


def test_each_provider_module_registers_one_provider_with_its_own_row_kinds() -> None:
    found = providers.registered()
    assert {p.kind for p in found} == {"ags", "badgr", "credly", "webhook"}
    row_kinds = [k for p in found for k in p.kinds]
    assert len(row_kinds) == len(set(row_kinds))  # a row kind names one provider
    for p in found:
        assert all(providers.of_row(k) is p for k in p.kinds)
    with pytest.raises(BadInput, match="credly"):
        providers.get("ftp")


@pytest.fixture
def fax_module(tmp_path: Path) -> Iterator[None]:
    """A fifth provider, added the documented way: one module in the package."""
    with provider_module(tmp_path, "fax", FAX):
        yield


@pytest.mark.usefixtures("fax_module")
def test_a_provider_added_as_one_module_is_configured_queued_delivered_and_revoked(
    engine: Engine,
) -> None:
    with db_session(engine, write=True) as s:
        with pytest.raises(BadInput, match="needs config"):
            repositories.create(s, kind="fax", name="Fax", config={})
        repo = repositories.create(s, kind="fax", name="Fax", config={"number": "+3212"})
        factories.competency(s, "py")
        (row,) = awards.enqueue_issue(s, snapshot=snapshot(1))
        s.commit()
    assert row.kind == "fax.send"
    worker = Worker(engine, build_connectors(engine), threads=1)
    try:
        drain(worker, engine)
        with db_session(engine, write=True) as s:
            (dest,) = status.destinations(s, credential_id=snapshot(1).credential_id)
            assert (dest.name, dest.state, dest.consent) == ("Fax", "delivered", "not_needed")
            (revoke,) = awards.propagate_revocation(s, snapshot(1).credential_id, "mistake")
            s.commit()
        assert (revoke.kind, revoke.repository_id) == ("fax.withdraw", repo.id)
        drain(worker, engine)
        with db_session(engine) as s:
            (dest,) = status.destinations(s, credential_id=snapshot(1).credential_id)
        assert dest.state == "revoked"
    finally:
        worker.close()
