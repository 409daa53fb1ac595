"""The web process's copy of the registrations its launches used (lti.adapter.Registrations):
entries expire, the copy does not grow without bound, and a dropped entry is gone. That a
launch on the copy sees every change of the rows is tested end to end in test_launch.py."""

from __future__ import annotations

import pytest

from service.db.models import Deployment, Platform
from service.lti import adapter


def _entry(n: int) -> adapter.Registered:
    platform = Platform.model_construct(id=n, issuer=f"https://lms{n}.test", client_id="c")
    deployment = Deployment.model_construct(id=n, platform_id=n, deployment_id="d")
    return adapter.Registered(platform, deployment, str(100 + n), str(200 + n))


def test_an_entry_lives_its_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(adapter.time, "monotonic", lambda: now[0])
    copy = adapter.Registrations(ttl=60)
    key = ("https://lms1.test", "c", "d")
    copy.put(key, _entry(1))
    now[0] += 59.9
    found = copy.get(key)
    assert found is not None and found.platform_version == "101"
    now[0] += 0.1
    assert copy.get(key) is None


def test_the_copy_starts_over_when_full_and_drops_on_demand() -> None:
    copy = adapter.Registrations(size=3)
    keys = [(f"https://lms{n}.test", "c", "d") for n in range(4)]
    for n, key in enumerate(keys[:3]):
        copy.put(key, _entry(n))
    assert all(copy.get(key) is not None for key in keys[:3])
    copy.put(keys[3], _entry(3))  # full: the others go
    assert [copy.get(key) is not None for key in keys] == [False, False, False, True]
    copy.drop(keys[3])
    copy.drop(keys[0])  # not there: nothing happens
    assert copy.get(keys[3]) is None
