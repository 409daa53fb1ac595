"""The examples in the docs are valid input (the docs cannot drift from the parser)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from service.sources import csvimport, push

DOCS = Path(__file__).parents[2] / "docs"


def block(name: str, lang: str) -> str:
    text = (DOCS / name).read_text()
    match = re.search(rf"```{lang}\n(.*?)```", text, re.S)
    assert match, f"no {lang} example in {name}"
    return match.group(1)


def test_csv_example_parses_without_problems() -> None:
    results, problems = csvimport.parse(block("csv-import.md", "csv").encode())
    assert problems == []
    assert len(results) == 2


def test_every_documented_column_is_accepted_and_vice_versa() -> None:
    text = (DOCS / "csv-import.md").read_text()
    documented = set(re.findall(r"^\| `(\w+)`(?:, `(\w+)`)?", text, re.M))
    names = {n for pair in documented for n in pair if n}
    assert names == set(csvimport.COLUMNS)


def test_push_example_is_a_valid_batch() -> None:
    batch = push.PushBatch.model_validate(json.loads(block("evidence-sources.md", "json")))
    assert len(batch.results) == 2 and len(batch.verifications) == 1


def test_moodle_setup_documented_is_what_the_real_moodle_lane_grants() -> None:
    from tests.moodle import rig

    functions, capabilities, restricted = rig.documented_grants()
    assert functions == set(rig.WS_FUNCTIONS)
    assert capabilities == set(rig.WS_CAPABILITIES)
    # The rig makes the service for authorised users only and authorises its user (moodle.php).
    assert restricted
