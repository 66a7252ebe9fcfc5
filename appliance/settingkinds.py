"""The kinds of settings: typed keys that parse the admin's forgiving text into
one canonical value, with errors that say what a key accepts.  Each feature
declares its keys with these (``appliance/<feature>/keys.py``);
`appliance.settings` puts them in the page's order over the store.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, Literal, NamedTuple, Protocol, TypeAlias, TypeVar

Language: TypeAlias = Literal["de", "en"]
T = TypeVar("T", bool, int, str, list[str])


class Text(NamedTuple):
    """A phrase in both languages the web page offers."""

    en: str
    de: str

    def in_(self, language: Language) -> str:
        return self.de if language == "de" else self.en


class ParseError(Exception):
    """A raw value a kind cannot accept; carries the reason in both languages."""

    def __init__(self, reason: Text) -> None:
        super().__init__(reason.en)
        self.reason = reason


class Kind(Protocol[T]):
    """How one type of setting is parsed, checked and shown."""

    @property
    def name(self) -> str:
        """The input widget: boolean, integer, choice, text or list."""

    def parse(self, raw: object) -> T:
        """Return the canonical value of ``raw`` or raise ``ParseError``."""

    def allowed(self) -> Text:
        """What the admin may enter, for error messages and the web table."""

    def display(self, value: T) -> str:
        """Text that ``parse`` turns back into ``value``."""

    def choices(self) -> tuple[str, ...]:
        """Values for a drop-down, or empty for free input."""


def _show(raw: object) -> str:
    text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."


_TRUE = {"on", "true", "1", "yes", "ja"}
_FALSE = {"off", "false", "0", "no", "nein"}


@dataclass(frozen=True)
class Boolean:
    name: str = "boolean"

    def parse(self, raw: object) -> bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str):
            word = raw.strip().lower()
            if word in _TRUE:
                return True
            if word in _FALSE:
                return False
        raise ParseError(Text(f"{_show(raw)} is not on or off", f"{_show(raw)} ist nicht on oder off"))

    def allowed(self) -> Text:
        return Text(
            "on/off, true/false, yes/no, ja/nein, 1/0",
            "on/off, true/false, ja/nein, yes/no, 1/0",
        )

    def display(self, value: bool) -> str:
        return "on" if value else "off"

    def choices(self) -> tuple[str, ...]:
        return ("on", "off")


_NO_UNIT = Text("", "")
_WHOLE = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True)
class Integer:
    minimum: int
    maximum: int
    unit: Text = _NO_UNIT
    name: str = "integer"

    def parse(self, raw: object) -> int:
        if isinstance(raw, str) and _WHOLE.fullmatch(raw.strip()):
            value = int(raw.strip())
        elif isinstance(raw, int) and not isinstance(raw, bool):
            value = raw
        else:
            raise ParseError(
                Text(
                    f"{_show(raw)} is not a whole number",
                    f"{_show(raw)} ist keine ganze Zahl",
                )
            )
        if not self.minimum <= value <= self.maximum:
            raise ParseError(
                Text(
                    f"{_show(raw)} is out of range",
                    f"{_show(raw)} liegt außerhalb des Bereichs",
                )
            )
        return value

    def allowed(self) -> Text:
        unit = Text(
            f" {self.unit.en}" if self.unit.en else "",
            f" {self.unit.de}" if self.unit.de else "",
        )
        return Text(
            f"{self.minimum} to {self.maximum}{unit.en}",
            f"{self.minimum} bis {self.maximum}{unit.de}",
        )

    def display(self, value: int) -> str:
        return str(value)

    def choices(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True)
class Choice:
    options: tuple[str, ...]
    name: str = "choice"

    def parse(self, raw: object) -> str:
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = str(raw)
        if isinstance(raw, str):
            word = raw.strip().lower()
            for option in self.options:
                if word == option.lower():
                    return option
        raise ParseError(
            Text(
                f"{_show(raw)} is not one of the choices",
                f"{_show(raw)} ist keine der Möglichkeiten",
            )
        )

    def allowed(self) -> Text:
        options = ", ".join(self.options)
        return Text(f"one of {options}", f"eines von {options}")

    def display(self, value: str) -> str:
        return value

    def choices(self) -> tuple[str, ...]:
        return self.options


@dataclass(frozen=True)
class Pattern:
    """Free text that must match a regular expression."""

    pattern: re.Pattern[str]
    description: Text
    name: str = "text"

    def parse(self, raw: object) -> str:
        if isinstance(raw, str) and self.pattern.fullmatch(raw.strip()):
            return raw.strip()
        raise ParseError(Text(f"{_show(raw)} is not valid", f"{_show(raw)} ist ungültig"))

    def allowed(self) -> Text:
        return self.description

    def display(self, value: str) -> str:
        return value

    def choices(self) -> tuple[str, ...]:
        return ()


_SEPARATORS = re.compile(r"[,;\n\r]+")
_INNER_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class ListOf:
    """Several items in one field, one per line (or separated by commas), as the
    admin types them: a space inside an item belongs to it ("030 123456")."""

    item: re.Pattern[str]
    description: Text
    name: str = "list"

    def parse(self, raw: object) -> list[str]:
        if isinstance(raw, str):
            items: Iterable[object] = [_item(part) for part in _SEPARATORS.split(raw) if part.strip()]
        elif isinstance(raw, list | tuple):
            items = [_item(part) if isinstance(part, str) else part for part in raw]
        else:
            raise ParseError(Text(f"{_show(raw)} is not a list", f"{_show(raw)} ist keine Liste"))
        bad = [item for item in items if not (isinstance(item, str) and self.item.fullmatch(item))]
        if bad:
            shown = ", ".join(_show(item) for item in bad)
            one = len(bad) == 1
            raise ParseError(
                Text(
                    f"{shown} {'is' if one else 'are'} not allowed",
                    f"{shown} {'ist' if one else 'sind'} nicht erlaubt",
                )
            )
        return list(dict.fromkeys(str(item) for item in items))

    def allowed(self) -> Text:
        return self.description

    def display(self, value: list[str]) -> str:
        return "\n".join(value)

    def choices(self) -> tuple[str, ...]:
        return ()


def _item(text: str) -> str:
    return _INNER_SPACE.sub(" ", text.strip())


@dataclass(frozen=True, eq=False)
class Setting(Generic[T]):
    """One key of the schema; ``default`` is already in canonical form."""

    name: str
    kind: Kind[T]
    default: T
    en: str
    de: str

    def description(self, language: Language) -> str:
        return self.de if language == "de" else self.en


NUMBERS = ListOf(
    re.compile(r"\+?\(?[0-9*#][0-9*# ()./-]*"),
    Text(
        "phone numbers, one per line (digits, leading +, * and #; spaces, /, - and () inside)",
        "Rufnummern, eine je Zeile (Ziffern, führendes +, * und #; Leerzeichen, /, - und () darin)",
    ),
)
EXTENSIONS = ListOf(
    re.compile(r"[0-9]+"), Text("internal numbers, one per line", "interne Rufnummern, eine je Zeile")
)
GROUPS = ListOf(
    re.compile(r"[A-Za-z0-9_-]+"),
    Text(
        "group names, one per line (letters, digits, _ and -)",
        "Gruppennamen, einer je Zeile (Buchstaben, Ziffern, _ und -)",
    ),
)

MINUTES = Text("minutes", "Minuten")
SECONDS = Text("seconds", "Sekunden")


def boolean(name: str, default: bool, en: str, de: str) -> Setting[bool]:
    return Setting(name, Boolean(), default, en, de)
