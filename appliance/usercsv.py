"""Users as CSV, for spreadsheets: export, and an import that is checked whole first.

Columns (a header line names them, in any order; ``extension`` and ``name``
are required): extension, name, email, language, groups, devices, numbers.
Groups, devices and further numbers are separated by spaces inside their
cell.  Commas or semicolons separate cells (German spreadsheets write
semicolons).  Every bad line is reported with its number and reason; an
import with any bad line stores nothing.

Names and e-mail addresses that a spreadsheet would run as a formula
(starting with ``=``, ``+``, ``-`` or ``@``) are exported with a leading
``'``, which the import removes again.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Generator, Iterable
from dataclasses import dataclass, replace

from appliance.directory import DirectoryError, User

COLUMNS = ("extension", "name", "email", "language", "groups", "devices", "numbers")
REQUIRED = ("extension", "name")
_FORMULA = ("=", "+", "-", "@")


@dataclass(frozen=True)
class Problem:
    line: int
    reason: str


@dataclass(frozen=True)
class Parsed:
    users: tuple[User, ...]
    problems: tuple[Problem, ...]
    lines: tuple[int, ...] = ()
    """The line of each user, in the same order."""


def _guarded(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA) else text


def _unguarded(text: str) -> str:
    return text[1:] if text.startswith("'") and text[1:].startswith(_FORMULA) else text


def users_csv(users: Iterable[User]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for user in users:
        writer.writerow(
            [
                user.extension,
                _guarded(user.name),
                _guarded(user.email),
                user.language,
                " ".join(user.groups),
                " ".join(user.devices),
                " ".join(user.numbers),
            ]
        )
    return out.getvalue()


ROWS_PER_STEP = 200
"""Rows checked between two turns of the reactor (a 2 MB file has ~25,000)."""


def parse_users_csv(text: str, existing: dict[str, User] | None = None) -> Parsed:
    """Every user of ``text``, validated, or the problems; ``existing`` users keep
    what the CSV does not say (Asterisk flags)."""
    steps = parse_steps(text, existing)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def parse_steps(text: str, existing: dict[str, User] | None = None) -> Generator[None, None, Parsed]:
    """`parse_users_csv` as steps of `ROWS_PER_STEP` rows, for a `Cooperator`."""
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or not lines[0].strip():
        return Parsed((), (Problem(1, "the file is empty; the first line must name the columns"),))
    delimiter = ";" if lines[0].count(";") > lines[0].count(",") else ","
    rows = list(csv.reader(lines, delimiter=delimiter))
    header = [cell.strip().lower().replace("e-mail", "email") for cell in rows[0]]
    unknown = [cell for cell in header if cell not in COLUMNS]
    missing = [column for column in REQUIRED if column not in header]
    if unknown or missing or len(set(header)) != len(header):
        reason = "header: "
        reason += "; ".join(
            part
            for part in (
                f"unknown column(s) {', '.join(unknown)}" if unknown else "",
                f"missing column(s) {', '.join(missing)}" if missing else "",
                "a column is named twice" if len(set(header)) != len(header) else "",
            )
            if part
        )
        return Parsed((), (Problem(1, reason + f" (columns: {', '.join(COLUMNS)})"),))
    users: list[User] = []
    user_lines: list[int] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for number, row in enumerate(rows[1:], start=2):
        if number % ROWS_PER_STEP == 0:
            yield None
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            problems.append(Problem(number, f"{len(row)} cells, the header has {len(header)}"))
            continue
        cells = {column: cell.strip() for column, cell in zip(header, row, strict=True)}
        extension = cells["extension"]
        if extension in seen:
            problems.append(Problem(number, f"extension {extension} is already on line {seen[extension]}"))
            continue
        seen[extension] = number
        base = (existing or {}).get(extension) or User(extension, "")
        user = replace(
            base,
            name=_unguarded(cells["name"]),
            email=_unguarded(cells.get("email", base.email)),
            language=cells.get("language", base.language),
            groups=tuple(cells["groups"].split()) if "groups" in cells else base.groups,
            devices=tuple(cells["devices"].split()) if "devices" in cells else base.devices,
            numbers=tuple(cells["numbers"].split()) if "numbers" in cells else base.numbers,
        )
        try:
            users.append(user.validated())
            user_lines.append(number)
        except DirectoryError as problem:
            problems.append(Problem(number, str(problem)))
    return Parsed(tuple(users), tuple(problems), tuple(user_lines))
