"""The admin's group form: the raw fields in, a `Group` or the problems per field out.

Pure (the directory is only read), so every rule is tested without HTTP.  Beyond
`Group.validated` the form checks what only the directory knows: the number is
no user's and no other group's (`Directory.group_number_clash`, the rule every
write of a group obeys), every member is a user.  Each problem is in
both languages and names the value, so the page shows it beside its field;
a form with any problem stores nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from appliance.directory import (
    EXTENSION,
    EXTERNAL_NUMBER,
    GROUP_NAME,
    GROUP_RING_MAX,
    GROUP_RING_MIN,
    OVERFLOW_BUSY,
    STRATEGIES,
    Directory,
    DirectoryError,
    Group,
)
from appliance.settings import Text

FIELDS = ("name", "number", "members", "strategy", "ring_seconds", "overflow", "overflow_number")
"""The form's fields; ``overflow`` is ``none``, ``busy`` or ``number`` (then ``overflow_number``)."""
OVERFLOW_CHOICES = ("none", OVERFLOW_BUSY, "number")
RESERVED_NAMES = frozenset({"new"})
"""``/admin/groups/new`` is the form for a new group, so no group can be called that."""
GENERAL = "form"
"""The key of a problem that belongs to no one field."""

_SEPARATORS = re.compile(r"[,;\s]+")
_SHOWN = 40


@dataclass(frozen=True)
class GroupForm:
    """A submitted (or stored) group as the form shows it."""

    values: Mapping[str, str]
    """Every field as typed (or as stored), to show the form again."""
    problems: dict[str, Text] = field(default_factory=dict)
    """Field name (or `GENERAL`) -> why it was refused."""
    group: Group | None = None
    """The group to store; None when there are problems."""


def members_of(text: str) -> list[str]:
    """The member list as typed: one extension a line (commas and spaces work too), in ring order."""
    return [item for item in _SEPARATORS.split(text) if item]


def form_of(group: Group) -> GroupForm:
    """A stored group's values, for its page."""
    overflow = group.overflow
    return GroupForm(
        {
            "name": group.name,
            "number": group.number,
            "members": "\n".join(group.members),
            "strategy": group.strategy,
            "ring_seconds": str(group.ring_seconds),
            "overflow": "none" if not overflow else OVERFLOW_BUSY if overflow == OVERFLOW_BUSY else "number",
            "overflow_number": "" if overflow in ("", OVERFLOW_BUSY) else overflow,
        },
        group=group,
    )


def new_form() -> GroupForm:
    return form_of(Group("", ""))


def parse_group_form(fields: Mapping[str, str], directory: Directory, editing: Group | None) -> GroupForm:
    """Check a submitted form; ``editing`` is the stored group (its name stays), None for a new one."""
    values = {name: str(fields.get(name, "")).strip() for name in FIELDS}
    if editing is not None:
        values["name"] = editing.name
    problems: dict[str, Text] = {}
    name, number = values["name"], values["number"]
    if editing is None:
        problem = _name_problem(name, directory)
        if problem:
            problems["name"] = problem
    problem = _number_problem(number, directory, name)
    if problem:
        problems["number"] = problem
    members = members_of(values["members"])
    problem = _members_problem(members, directory)
    if problem:
        problems["members"] = problem
    if values["strategy"] not in STRATEGIES:
        problems["strategy"] = Text(
            "Strategy: please choose one from the list.", "Strategie: bitte eine aus der Liste wählen."
        )
    ring_seconds = _whole_number(values["ring_seconds"])
    if ring_seconds is None or not GROUP_RING_MIN <= ring_seconds <= GROUP_RING_MAX:
        problems["ring_seconds"] = Text(
            f"Ring time: {_shown(values['ring_seconds'])} is not a whole number of seconds "
            f"from {GROUP_RING_MIN} to {GROUP_RING_MAX}.",
            f"Klingelzeit: {_shown(values['ring_seconds'])} ist keine ganze Zahl von Sekunden "
            f"von {GROUP_RING_MIN} bis {GROUP_RING_MAX}.",
        )
    overflow, problem = _overflow(values["overflow"], values["overflow_number"], number)
    if problem:
        problems["overflow"] = problem
    if problems or ring_seconds is None:
        return GroupForm(values, problems)
    group = Group(name, number, tuple(members), values["strategy"], ring_seconds, overflow)
    try:
        return GroupForm(values, group=group.validated())
    except DirectoryError as refused:  # a rule of the model the form does not know yet
        return GroupForm(values, {GENERAL: Text(str(refused), str(refused))})


def _shown(value: str) -> str:
    """A typed value inside a message: quoted and never longer than a line."""
    text = value if len(value) <= _SHOWN else value[: _SHOWN - 1] + "…"
    return f"“{text}”"


def _whole_number(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def _name_problem(name: str, directory: Directory) -> Text | None:
    if not name:
        return Text("Name: please enter a name.", "Name: bitte einen Namen eingeben.")
    if not GROUP_NAME.match(name):
        return Text(
            f"Name: {_shown(name)} is not 1 to 32 letters, digits, - or _ (no spaces, no umlauts).",
            f"Name: {_shown(name)} sind nicht 1 bis 32 Buchstaben, Ziffern, - oder _ "
            "(keine Leerzeichen, keine Umlaute).",
        )
    if name in RESERVED_NAMES:
        return Text(
            f"Name: {_shown(name)} is reserved; please choose another name.",
            f"Name: {_shown(name)} ist reserviert; bitte einen anderen Namen wählen.",
        )
    if directory.group(name) is not None:
        return Text(
            f"Name: a group called {_shown(name)} exists already.",
            f"Name: eine Gruppe {_shown(name)} gibt es schon.",
        )
    return None


def _number_problem(number: str, directory: Directory, name: str) -> Text | None:
    if not EXTENSION.match(number):
        return Text(
            f"Number: {_shown(number)} is not 2 to 8 digits.",
            f"Rufnummer: {_shown(number)} sind nicht 2 bis 8 Ziffern.",
        )
    clash = directory.group_number_clash(Group(name, number))
    return clash.text if clash is not None else None


def _members_problem(members: list[str], directory: Directory) -> Text | None:
    malformed = [member for member in members if not EXTENSION.match(member)]
    if malformed:
        return Text(
            f"Members: {_shown(malformed[0])} is not an extension (2 to 8 digits).",
            f"Mitglieder: {_shown(malformed[0])} ist keine Rufnummer (2 bis 8 Ziffern).",
        )
    twice = sorted({member for member in members if members.count(member) > 1})
    if twice:
        return Text(
            f"Members: {', '.join(twice)} listed twice.",
            f"Mitglieder: {', '.join(twice)} doppelt aufgeführt.",
        )
    unknown = [member for member in members if directory.user(member) is None]
    if len(unknown) == 1:
        return Text(f"Members: {unknown[0]} is not a user.", f"Mitglieder: {unknown[0]} ist kein Benutzer.")
    if unknown:
        listed = ", ".join(unknown)
        return Text(f"Members: {listed} are not users.", f"Mitglieder: {listed} sind keine Benutzer.")
    return None


def _overflow(choice: str, target: str, number: str) -> tuple[str, Text | None]:
    """The stored overflow ("" none, "busy", or a number) and the problem, if any."""
    if choice == "none":
        return "", None
    if choice == OVERFLOW_BUSY:
        return OVERFLOW_BUSY, None
    if choice != "number":
        return "", Text("Overflow: please choose one from the list.", "Überlauf: bitte aus der Liste wählen.")
    if not target:
        return "", Text(
            "Overflow: please enter the number unanswered calls go to.",
            "Überlauf: bitte die Rufnummer eingeben, zu der unbeantwortete Anrufe gehen.",
        )
    if not (EXTENSION.match(target) or EXTERNAL_NUMBER.match(target)):
        return "", Text(
            f"Overflow: {_shown(target)} is not a phone number.",
            f"Überlauf: {_shown(target)} ist keine Rufnummer.",
        )
    if target == number:
        return "", Text(
            "Overflow: a group cannot overflow to its own number.",
            "Überlauf: eine Gruppe kann nicht zu ihrer eigenen Rufnummer überlaufen.",
        )
    return target, None
