"""The admin's group form: parsing and every refusal, without HTTP."""

from __future__ import annotations

import pytest

from appliance.directory import Directory, Group, User
from appliance.testing import MemoryStore
from appliance.web.groupform import GENERAL, form_of, members_of, new_form, parse_group_form

GOOD = {
    "name": "sales",
    "number": "600",
    "members": "201\n200",
    "strategy": "hunt",
    "ring_seconds": "15",
    "overflow": "number",
    "overflow_number": "+493012345",
}


@pytest.fixture
def directory() -> Directory:
    directory = Directory(MemoryStore())
    directory.put_user(User("200", "Anna Berg", numbers=("+49301234200", "250"), devices=("200soft",)))
    directory.put_user(User("201", "Ben Cole"))
    directory.put_user(User("202", "Cleo Dorn"))
    directory.put_group(Group("support", "610", ("202",)))
    return directory


def test_a_good_form_gives_the_group_in_ring_order(directory: Directory) -> None:
    """Members keep the order typed; the numbers and the overflow come through as typed."""
    form = parse_group_form(GOOD, directory, None)
    assert form.problems == {}
    assert form.group == Group("sales", "600", ("201", "200"), "hunt", 15, "+493012345")


def test_members_may_be_separated_by_lines_commas_or_spaces() -> None:
    """A pasted list works as well as one extension a line; blank lines do not count."""
    assert members_of("200\r\n\r\n201, 202;203  204\n") == ["200", "201", "202", "203", "204"]


def test_form_of_a_stored_group_parses_back_to_it(directory: Directory) -> None:
    """The page shows a stored group so that saving it unchanged stores the same group."""
    for overflow in ("", "busy", "300"):
        group = Group("support", "610", ("202", "201"), "cyclic", 30, overflow)
        shown = form_of(group).values
        assert parse_group_form(shown, directory, group).group == group


def test_a_new_form_starts_with_the_model_defaults(directory: Directory) -> None:
    """Ring all, 20 seconds, no overflow."""
    values = new_form().values
    assert (values["strategy"], values["ring_seconds"], values["overflow"]) == ("ringall", "20", "none")


@pytest.mark.parametrize(
    ("changes", "field", "english", "german"),
    [
        ({"name": ""}, "name", "Name: please enter a name.", "Name: bitte einen Namen eingeben."),
        ({"name": "Sales team"}, "name", "“Sales team” is not 1 to 32 letters", "sind nicht 1 bis 32"),
        ({"name": "Vertrieb-Süd"}, "name", "no umlauts", "keine Umlaute"),
        ({"name": "support"}, "name", "a group called “support” exists already", "gibt es schon"),
        ({"name": "new"}, "name", "“new” is reserved", "ist reserviert"),
        ({"number": ""}, "number", "Number: “” is not 2 to 8 digits.", "Rufnummer: “” sind nicht"),
        ({"number": "6a0"}, "number", "“6a0” is not 2 to 8 digits", "sind nicht 2 bis 8 Ziffern"),
        ({"number": "201"}, "number", "201 is a number of user 201 (Ben Cole)", "Benutzer 201 (Ben Cole)"),
        ({"number": "250"}, "number", "250 is a number of user 200 (Anna Berg)", "Benutzer 200 (Anna Berg)"),
        ({"number": "+49301234200"}, "number", "is not 2 to 8 digits", "Ziffern"),
        ({"number": "610"}, "number", "610 is the number of group support already", "der Gruppe support"),
        ({"members": "200\nabc"}, "members", "“abc” is not an extension", "ist keine Rufnummer"),
        ({"members": "200\n201\n200"}, "members", "Members: 200 listed twice.", "200 doppelt aufgeführt"),
        (
            {"members": "200 999"},
            "members",
            "Members: 999 is not a user.",
            "Mitglieder: 999 ist kein Benutzer.",
        ),
        ({"members": "998 200 999"}, "members", "998, 999 are not users", "998, 999 sind keine Benutzer"),
        ({"strategy": "random"}, "strategy", "Strategy: please choose", "Strategie: bitte"),
        (
            {"ring_seconds": "abc"},
            "ring_seconds",
            "“abc” is not a whole number of seconds from 5 to 300",
            "5 bis 300",
        ),
        ({"ring_seconds": "4"}, "ring_seconds", "“4” is not a whole number", "ganze Zahl"),
        ({"ring_seconds": "301"}, "ring_seconds", "“301” is not", "ist keine"),
        ({"ring_seconds": "1e2"}, "ring_seconds", "“1e2” is not", "ist keine"),
        ({"ring_seconds": "٣٠"}, "ring_seconds", "is not a whole number", "ganze Zahl"),
        ({"overflow": "later"}, "overflow", "Overflow: please choose", "Überlauf: bitte aus der Liste"),
        ({"overflow_number": ""}, "overflow", "please enter the number", "bitte die Rufnummer"),
        (
            {"overflow_number": "0800-FLOWERS"},
            "overflow",
            "“0800-FLOWERS” is not a phone number",
            "keine Rufnummer",
        ),
        ({"overflow_number": "600"}, "overflow", "cannot overflow to its own number", "eigenen Rufnummer"),
    ],
)
def test_a_bad_field_is_refused_in_both_languages(
    directory: Directory, changes: dict[str, str], field: str, english: str, german: str
) -> None:
    """The problem sits on its field, says what is wrong in English and German; no group."""
    form = parse_group_form({**GOOD, **changes}, directory, None)
    assert form.group is None
    assert list(form.problems) == [field]
    assert english in form.problems[field].en
    assert german in form.problems[field].de


def test_every_bad_field_is_named_at_once(directory: Directory) -> None:
    """The admin sees all problems in one go, not one per submit."""
    bad = {"name": "", "number": "201", "members": "999", "strategy": "", "ring_seconds": "x", "overflow": ""}
    form = parse_group_form(bad, directory, None)
    assert form.group is None
    assert set(form.problems) == {"name", "number", "members", "strategy", "ring_seconds", "overflow"}


def test_the_values_as_typed_come_back(directory: Directory) -> None:
    """A refused form is shown again as typed (trimmed), so nothing has to be typed twice."""
    form = parse_group_form({**GOOD, "members": " 200\n999 ", "ring_seconds": "abc"}, directory, None)
    assert form.values["members"] == "200\n999"
    assert form.values["ring_seconds"] == "abc"
    assert form.values["overflow_number"] == "+493012345"


def test_a_long_value_is_shortened_in_the_message(directory: Directory) -> None:
    """A pasted novel does not become a novel-sized message."""
    form = parse_group_form({**GOOD, "name": "x" * 500}, directory, None)
    assert len(form.problems["name"].en) < 150
    assert "…" in form.problems["name"].en


def test_editing_keeps_the_name_and_its_own_number(directory: Directory) -> None:
    """The stored group's own number is not "another group's"; a submitted name is ignored."""
    stored = directory.group("support")
    assert stored is not None
    form = parse_group_form({**GOOD, "name": "renamed", "number": "610"}, directory, stored)
    assert form.problems == {}
    assert form.group is not None
    assert (form.group.name, form.group.number) == ("support", "610")


def test_editing_refuses_the_number_of_another_group(directory: Directory) -> None:
    """Renumbering onto a number in use by another group is refused."""
    directory.put_group(Group("sales", "600", ("200",)))
    stored = directory.group("support")
    form = parse_group_form({**GOOD, "number": "600"}, directory, stored)
    assert "600 is the number of group sales already" in form.problems["number"].en


def test_overflow_none_and_busy_ignore_a_typed_number(directory: Directory) -> None:
    """Only "go on to a number" uses the number field."""
    for choice, stored in (("none", ""), ("busy", "busy")):
        form = parse_group_form({**GOOD, "overflow": choice, "overflow_number": "junk"}, directory, None)
        assert form.group is not None
        assert form.group.overflow == stored


def test_a_group_without_members_may_be_saved(directory: Directory) -> None:
    """An admin may create the group first and add members later."""
    form = parse_group_form({**GOOD, "members": ""}, directory, None)
    assert form.group is not None
    assert form.group.members == ()


def test_the_model_has_the_last_word(directory: Directory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rule only `Group.validated` knows still refuses the form, as a general problem."""
    from appliance import directory as model

    monkeypatch.setattr(model, "STRATEGIES", ("ringall",))
    form = parse_group_form(GOOD, directory, None)
    assert form.group is None
    assert "strategy: 'hunt' is not one of ringall" in form.problems[GENERAL].en
