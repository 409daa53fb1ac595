"""Which URLs count as the tool's own (target_link_uri checks)."""

from __future__ import annotations

import pytest

from service.lti.launch import is_own_url
from service.settings import Settings


@pytest.mark.parametrize(
    ("base", "url", "own"),
    [
        ("https://tool.example.edu", "https://tool.example.edu/lti/launch", True),
        ("https://tool.example.edu", "https://TOOL.example.edu/lti/launch?x=1", True),
        ("https://tool.example.edu", "https://tool.example.edu.evil.test/lti/launch", False),
        ("https://tool.example.edu", "http://tool.example.edu/lti/launch", False),
        ("https://tool.example.edu", "https://user@tool.example.edu/lti/launch", False),
        ("https://tool.example.edu/mc", "https://tool.example.edu/mc/lti/launch", True),
        ("https://tool.example.edu/mc", "https://tool.example.edu/mcx/lti/launch", False),
        ("https://tool.example.edu/mc", "https://tool.example.edu/other", False),
        ("http://127.0.0.1:8000", "http://localhost:8000/lti/launch", True),
        ("http://127.0.0.1:8000", "http://localhost:8001/lti/launch", False),
        ("http://127.0.0.1:8000", "http://10.0.0.1:8000/lti/launch", False),
        ("https://tool.example.edu", "https://tool.example.edu:99999/x", False),
        ("https://tool.example.edu", "javascript:alert(1)", False),
    ],
)
def test_is_own_url(base: str, url: str, own: bool) -> None:
    assert is_own_url(url, Settings(base_url=base)) is own
