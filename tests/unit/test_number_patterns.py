"""The shapes of numbers are defined once, in `appliance.numbers`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from appliance import numbers

ROOT = Path(__file__).resolve().parents[2]
SHARED = {
    # Without the end anchor: written again with "$" instead of "\Z" it is still the same shape.
    name: getattr(numbers, name).pattern.removesuffix("\\Z")
    for name in ("EXTENSION", "EXTERNAL_NUMBER", "FORWARD_TARGET", "TYPED_NUMBER")
}


def test_no_module_writes_a_shared_pattern_again() -> None:
    """No module of the appliance but `appliance.numbers` spells out one of its patterns."""
    written_again = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / "appliance").rglob("*.py"))
        if path.name != "numbers.py" or path.parent.name != "appliance"
        for name, pattern in SHARED.items()
        if pattern in path.read_text(encoding="utf-8")
    ]
    assert written_again == []


@pytest.mark.parametrize(
    ("pattern", "good", "bad"),
    [
        (numbers.EXTENSION, ["10", "200", "12345678"], ["1", "123456789", "+200", "20a", "200\n"]),
        (
            numbers.EXTERNAL_NUMBER,
            ["112", "+4930123456", "0" * 20],
            ["12", "+12", "0" * 21, "03 1", "112\n"],
        ),
        (numbers.FORWARD_TARGET, ["20", "+4930123456", "300"], ["2", "+", "0" * 21, "*21", "300\n"]),
        (numbers.TYPED_NUMBER, ["20", "01701234567"], ["+4930123456", "2", "0" * 21, "20\n"]),
    ],
)
def test_patterns_take_whole_numbers_only(pattern: re.Pattern[str], good: list[str], bad: list[str]) -> None:
    """Each pattern accepts its numbers and refuses the rest, the whole text."""
    assert [text for text in good if not pattern.match(text)] == []
    assert [text for text in bad if pattern.match(text)] == []
