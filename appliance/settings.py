"""The admin-editable settings: a schema of typed keys over the store.

The admin edits these as text in a key/value table (like the UCware admin
client), so every kind parses forgiving text input into one canonical typed
value, and every error says which key was wrong and what it accepts.  Values
live in the store namespace ``settings`` as typed JSON; features read them on
use or subscribe, so a saved change takes effect without a restart.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import (
    Any,
    Generic,
    Literal,
    NamedTuple,
    Protocol,
    TypeAlias,
    TypeVar,
    overload,
)

import phonenumbers
from twisted.logger import Logger

from appliance.store import DELETE, Change, IKeyValueStore, JSONValue

log = Logger()

NAMESPACE = "settings"

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


_NUMBERS = ListOf(
    re.compile(r"\+?\(?[0-9*#][0-9*# ()./-]*"),
    Text(
        "phone numbers, one per line (digits, leading +, * and #; spaces, /, - and () inside)",
        "Rufnummern, eine je Zeile (Ziffern, führendes +, * und #; Leerzeichen, /, - und () darin)",
    ),
)
_EXTENSIONS = ListOf(
    re.compile(r"[0-9]+"), Text("internal numbers, one per line", "interne Rufnummern, eine je Zeile")
)
_GROUPS = ListOf(
    re.compile(r"[A-Za-z0-9_-]+"),
    Text(
        "group names, one per line (letters, digits, _ and -)",
        "Gruppennamen, einer je Zeile (Buchstaben, Ziffern, _ und -)",
    ),
)
_LINK_PREFIX = Pattern(
    re.compile(r"|[A-Za-z0-9+.-]{1,9}:"),
    Text(
        "empty (no links) or up to 9 characters plus ':', e.g. tel:, phone:, callto:",
        "leer (keine Links) oder bis zu 9 Zeichen plus ':', z.B. tel:, phone:, callto:",
    ),
)
_MAIL_LANGUAGE = Pattern(
    re.compile(r"|[a-z]{2,3}"),
    Text(
        "empty (the appliance's language) or a language with a template, e.g. de, en",
        "leer (Sprache der Appliance) oder eine Sprache mit Vorlage, z.B. de, en",
    ),
)
_MINUTES = Text("minutes", "Minuten")
_SECONDS = Text("seconds", "Sekunden")


def _bool(name: str, default: bool, en: str, de: str) -> Setting[bool]:
    return Setting(name, Boolean(), default, en, de)


CC_OFFER = _bool(
    "CC_OFFER", True,
    "Offer automatic callback; off disables all other CC_ keys",
    "Automatischen Rückruf anbieten; aus deaktiviert alle anderen CC_-Schlüssel",
)  # fmt: skip
CC_BUSY_TONE = _bool(
    "CC_BUSY_TONE", False,
    "Play busy tone instead of the callback announcement",
    "Besetztton statt der Rückruf-Ansage spielen",
)  # fmt: skip
CC_CCNR_ENABLED = _bool(
    "CC_CCNR_ENABLED", False,
    "Also offer callback when a reachable user does not answer (*39)",
    "Rückruf auch anbieten, wenn ein erreichbarer Teilnehmer nicht abnimmt (*39)",
)  # fmt: skip
CC_EXTERNAL = _bool(
    "CC_EXTERNAL", False,
    "Also offer callback to external callers",
    "Rückruf auch externen Anrufern anbieten",
)  # fmt: skip
CC_TIMEOUT = Setting(
    "CC_TIMEOUT", Integer(1, 10080, _MINUTES), 60,
    "Minutes until an open callback request is deleted",
    "Minuten, bis ein offener Rückrufwunsch gelöscht wird",
)  # fmt: skip
CC_WAIT_TIME = Setting(
    "CC_WAIT_TIME", Integer(5, 300, _SECONDS), 20,
    "Seconds the callback rings at the requester",
    "Sekunden, die der Rückruf beim Anfordernden klingelt",
)  # fmt: skip
CC_DTMF_KEY = Setting(
    "CC_DTMF_KEY", Choice(tuple("0123456789*#")), "5",
    "Key the caller presses to request a callback",
    "Taste, mit der der Anrufer den Rückruf anfordert",
)  # fmt: skip
CC_TARGET_RING_TIME = Setting(
    "CC_TARGET_RING_TIME", Integer(5, 300, _SECONDS), 60,
    "Seconds the callback rings at the requested user once the requester answered",
    "Sekunden, die der Rückruf beim Angerufenen klingelt, nachdem der Anfordernde abgenommen hat",
)  # fmt: skip
CW_DEFAULT = _bool(
    "CW_DEFAULT", False,
    "Call waiting for users who did not choose: on = a second call rings during a call, "
    "off = a user in a call is busy",
    "Anklopfen für Benutzer ohne eigene Wahl: an = ein zweiter Anruf klingelt während "
    "eines Gesprächs, aus = ein Benutzer im Gespräch ist besetzt",
)  # fmt: skip
CW_RING_TIME = Setting(
    "CW_RING_TIME", Integer(3, 120, _SECONDS), 20,
    "Seconds a waiting call rings while the user is in a call before the caller gets "
    "the busy treatment (busy forward, callback offer)",
    "Sekunden, die ein anklopfender Anruf während eines Gesprächs klingelt, bevor der "
    "Anrufer wie bei Besetzt behandelt wird (Umleitung bei Besetzt, Rückruf-Angebot)",
)  # fmt: skip
MC_RECIPIENTS = Setting(
    "MC_RECIPIENTS", Choice(("none", "first", "last", "all")), "all",
    "Who gets the missed-call mail: none, first, last or all unanswered participants",
    "Wer die Mail zum verpassten Anruf erhält: keiner, erster, letzter oder alle "
    "Teilnehmer, die nicht abgenommen haben",
)  # fmt: skip
MC_MAIL_IF_PICKED_UP = _bool(
    "MC_MAIL_IF_PICKED_UP", False,
    "Send the mail even if someone else answered (e.g. pickup)",
    "Mail auch senden, wenn ein anderer abgenommen hat (z.B. Pickup)",
)  # fmt: skip
MC_CALLER_AS_SENDER = _bool(
    "MC_CALLER_AS_SENDER", False,
    "Use the caller's e-mail address as sender",
    "E-Mail-Adresse des Anrufers als Absender verwenden",
)  # fmt: skip
MC_ATTACH_VCARD = _bool(
    "MC_ATTACH_VCARD", True,
    "Attach the caller's contact as vCard",
    "Kontakt des Anrufers als vCard anhängen",
)  # fmt: skip
MC_LINK_PREFIX = Setting(
    "MC_LINK_PREFIX", _LINK_PREFIX, "tel:",
    "Link prefix for phone numbers in the mail; empty = no links",
    "Link-Präfix für Rufnummern in der Mail; leer = keine Links",
)  # fmt: skip
MC_EXCLUDE_INTERNAL = _bool(
    "MC_EXCLUDE_INTERNAL", False,
    "No mail for internal callers",
    "Keine Mail bei internen Anrufern",
)  # fmt: skip
MC_EXCLUDE_SUPPRESSED = _bool(
    "MC_EXCLUDE_SUPPRESSED", False,
    "No mail if the caller ID is suppressed",
    "Keine Mail bei unterdrückter Rufnummer",
)  # fmt: skip
MC_EXCLUDE_UNRESOLVED = _bool(
    "MC_EXCLUDE_UNRESOLVED", False,
    "No mail if no contact is found for the caller",
    "Keine Mail, wenn kein Kontakt zum Anrufer gefunden wird",
)  # fmt: skip
MC_EXCLUDE_REPEAT_SAME_DAY = _bool(
    "MC_EXCLUDE_REPEAT_SAME_DAY", False,
    "No mail for a repeated call on the same day",
    "Keine Mail bei wiederholtem Anruf am selben Tag",
)  # fmt: skip
MC_EXCLUDE_REPEAT_UNTIL_LOGIN = _bool(
    "MC_EXCLUDE_REPEAT_UNTIL_LOGIN", False,
    "No mail for a repeated call until the user logs in again: a web login, the phone "
    "registering again, or marking the journal seen, whichever comes first",
    "Keine Mail bei wiederholtem Anruf, bis sich der Benutzer wieder anmeldet: Anmeldung "
    "am Web, erneute Registrierung des Telefons oder Journal als gesehen markiert, was "
    "zuerst eintritt",
)  # fmt: skip
MC_EXCLUDE_SHORT_RING = _bool(
    "MC_EXCLUDE_SHORT_RING", False,
    "No mail if the phone rang less than 2 seconds",
    "Keine Mail, wenn es weniger als 2 Sekunden geklingelt hat",
)  # fmt: skip
MC_EXCLUDE_NUMBERS = Setting(
    "MC_EXCLUDE_NUMBERS", _NUMBERS, [],
    "No mail for calls from these numbers (e.g. door phones)",
    "Keine Mail bei Anrufen von diesen Rufnummern (z.B. Türsprechstellen)",
)  # fmt: skip
MC_LANGUAGE = Setting(
    "MC_LANGUAGE", _MAIL_LANGUAGE, "",
    "Language of the missed-call mail for users who chose none; empty = the appliance's "
    "language (config.ini). A user's own language comes first. Offered: the templates present",
    "Sprache der Mail zum verpassten Anruf für Benutzer ohne eigene Sprache; leer = Sprache "
    "der Appliance (config.ini). Die eigene Sprache des Benutzers geht vor. Angeboten: die "
    "vorhandenen Vorlagen",
)  # fmt: skip
JOURNAL_ENABLED = _bool(
    "JOURNAL_ENABLED", True,
    "Keep a missed-call journal per user (independent of the mail)",
    "Journal der verpassten Anrufe je Benutzer führen (unabhängig von der Mail)",
)  # fmt: skip
JOURNAL_RETENTION_DAYS = Setting(
    "JOURNAL_RETENTION_DAYS", Integer(1, 3650, Text("days", "Tage")), 90,
    "Days a missed-call journal entry is kept",
    "Tage, die ein Eintrag im Journal der verpassten Anrufe bleibt",
)  # fmt: skip
JOURNAL_MAX_ENTRIES = Setting(
    "JOURNAL_MAX_ENTRIES", Integer(10, 5000), 500,
    "Most entries kept in one user's missed-call journal (the oldest go first)",
    "Höchstzahl der Einträge im Journal eines Benutzers (die ältesten fallen weg)",
)  # fmt: skip
FWD_DISPLAY = _bool(
    "FWD_DISPLAY", True,
    "Show 'Fwd for <forwarder>' to the target of unconditional and busy forwards",
    "Dem Ziel von sofortigen und Besetzt-Umleitungen 'Uml. für <Umleitender>' anzeigen",
)  # fmt: skip
GROUP_DISPLAY = _bool(
    "GROUP_DISPLAY", True,
    "A group call shows '<group name>: <caller>' to the members",
    "Ein Gruppenruf zeigt den Mitgliedern '<Gruppenname>: <Anrufer>'",
)  # fmt: skip
FWD_DISPLAY_NUMBER = _bool(
    "FWD_DISPLAY_NUMBER", False,
    "Forward display shows the forwarder's number instead of the directory name",
    "Umleitungsanzeige zeigt die Rufnummer des Umleitenden statt des Namens",
)  # fmt: skip
FWD_DISPLAY_WIDTH = Setting(
    "FWD_DISPLAY_WIDTH", Integer(16, 64, Text("characters", "Zeichen")), 32,
    "Characters the phones' display shows; a longer forwarder name is shortened",
    "Zeichen, die das Telefondisplay zeigt; ein längerer Name des Umleitenden wird gekürzt",
)  # fmt: skip
FWD_BREAKTHROUGH_USERS = Setting(
    "FWD_BREAKTHROUGH_USERS", _EXTENSIONS, [],
    "Users (internal numbers) who may break through every forward",
    "Benutzer (interne Rufnummern), die jede Umleitung durchbrechen dürfen",
)  # fmt: skip
FWD_BREAKTHROUGH_GROUPS = Setting(
    "FWD_BREAKTHROUGH_GROUPS", _GROUPS, [],
    "Groups whose members may break through every forward",
    "Gruppen, deren Mitglieder jede Umleitung durchbrechen dürfen",
)  # fmt: skip
FWD_BREAKTHROUGH_CALLERIDS = Setting(
    "FWD_BREAKTHROUGH_CALLERIDS", _NUMBERS, [],
    "External caller IDs that may break through every forward",
    "Externe Rufnummern, die jede Umleitung durchbrechen dürfen",
)  # fmt: skip
_AREA_CODE = Text("an area code (digits) or empty", "eine Vorwahl (Ziffern) oder leer")
PHONE_COUNTRY = Setting(
    "PHONE_COUNTRY", Choice(tuple(sorted(phonenumbers.SUPPORTED_REGIONS))), "DE",
    "Country of this phone system (ISO code); national numbers are read as from this country",
    "Land dieser Telefonanlage (ISO-Code); nationale Rufnummern gelten als aus diesem Land",
)  # fmt: skip
PHONE_AREA = Setting(
    "PHONE_AREA", Pattern(re.compile(r"0?[1-9][0-9]{0,5}|"), _AREA_CODE), "",
    "Local area code (e.g. 30 for Berlin); numbers without it are read as local; empty = none",
    "Ortsvorwahl (z.B. 30 für Berlin); Rufnummern ohne Vorwahl gelten als Ortsnummern; leer = keine",
)  # fmt: skip
DIR_PBX_USERS = _bool(
    "DIR_PBX_USERS", True,
    "Create a user for every new PJSIP endpoint of Asterisk",
    "Für jeden neuen PJSIP-Endpunkt von Asterisk einen Benutzer anlegen",
)  # fmt: skip
FWD_MAX_HOPS = Setting(
    "FWD_MAX_HOPS", Integer(1, 20), 5,
    "Maximum forwards in a row before a loop is assumed",
    "Maximale Anzahl aufeinanderfolgender Umleitungen, bevor eine Schleife angenommen wird",
)  # fmt: skip

_URL = Pattern(
    re.compile(r"|https?://[^\s/?#@]+(/[^\s]*)?", re.IGNORECASE),
    Text("empty (none) or an http:// or https:// URL", "leer (keiner) oder eine http://- oder https://-URL"),
)
HOLIDAY_ICAL_URL = Setting(
    "HOLIDAY_ICAL_URL", _URL, "",
    "iCalendar URL of the appliance's holiday calendar (e.g. public holidays), for forward "
    "schedules that follow it; empty = none",
    "iCalendar-URL des Feiertagskalenders der Anlage (z.B. gesetzliche Feiertage), für "
    "Umleitungs-Zeitpläne, die ihm folgen; leer = keiner",
)  # fmt: skip
HOLIDAY_ICAL_REFRESH = Setting(
    "HOLIDAY_ICAL_REFRESH", Integer(5, 10080, _MINUTES), 60,
    "Minutes between two fetches of the holiday calendar (a failed fetch is retried within 5 minutes)",
    "Minuten zwischen zwei Abrufen des Feiertagskalenders (ein fehlgeschlagener Abruf wird "
    "nach spätestens 5 Minuten wiederholt)",
)  # fmt: skip

_ALL: list[Setting[Any]] = [
    CC_OFFER, CC_BUSY_TONE, CC_CCNR_ENABLED, CC_EXTERNAL, CC_TIMEOUT,
    CC_WAIT_TIME, CC_DTMF_KEY, CC_TARGET_RING_TIME, CW_DEFAULT, CW_RING_TIME,
    MC_RECIPIENTS, MC_MAIL_IF_PICKED_UP,
    MC_CALLER_AS_SENDER, MC_ATTACH_VCARD, MC_LINK_PREFIX,
    MC_EXCLUDE_INTERNAL, MC_EXCLUDE_SUPPRESSED, MC_EXCLUDE_UNRESOLVED,
    MC_EXCLUDE_REPEAT_SAME_DAY, MC_EXCLUDE_REPEAT_UNTIL_LOGIN,
    MC_EXCLUDE_SHORT_RING, MC_EXCLUDE_NUMBERS, MC_LANGUAGE, JOURNAL_ENABLED,
    JOURNAL_RETENTION_DAYS, JOURNAL_MAX_ENTRIES, FWD_DISPLAY, GROUP_DISPLAY, FWD_DISPLAY_NUMBER,
    FWD_DISPLAY_WIDTH, FWD_BREAKTHROUGH_USERS, FWD_BREAKTHROUGH_GROUPS,
    FWD_BREAKTHROUGH_CALLERIDS, FWD_MAX_HOPS, PHONE_COUNTRY, PHONE_AREA,
    DIR_PBX_USERS, HOLIDAY_ICAL_URL, HOLIDAY_ICAL_REFRESH,
]  # fmt: skip
#: Every setting by name, in the order the admin table shows them.
SCHEMA: Mapping[str, Setting[Any]] = {setting.name: setting for setting in _ALL}


class SettingError(Exception):
    """Base of the errors the web page shows to the admin."""


class UnknownSetting(SettingError, LookupError):
    """The name is not in the schema (a typo, or a key from another version)."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = tuple(names)
        super().__init__("unknown setting: " + ", ".join(map(repr, self.names)))


class Problem(NamedTuple):
    """Why one raw value was refused."""

    name: str
    reason: Text
    allowed: Text

    def message(self, language: Language = "en") -> str:
        word = "erlaubt" if language == "de" else "allowed"
        return f"{self.name}: {self.reason.in_(language)} ({word}: {self.allowed.in_(language)})"


class InvalidSetting(SettingError, ValueError):
    """One or more raw values were refused; nothing was stored."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__(self.message("en"))

    def message(self, language: Language = "en") -> str:
        return "; ".join(problem.message(language) for problem in self.problems)


class Row(NamedTuple):
    """One line of the key/value table on the admin page."""

    name: str
    description: str
    value: str
    default: str
    is_default: bool
    kind: str
    allowed: str
    choices: tuple[str, ...]


#: ``callback(name, value)``; ``value`` is the new effective (typed) value.
SettingsCallback: TypeAlias = Callable[[str, Any], object]


class Settings:
    """Typed access to the ``settings`` namespace of a store."""

    def __init__(self, store: IKeyValueStore, schema: Mapping[str, Setting[Any]] = SCHEMA) -> None:
        self._store = store
        self._schema = schema
        self._warned: set[tuple[str, str]] = set()

    def _setting(self, name: str | Setting[Any]) -> Setting[Any]:
        key = name.name if isinstance(name, Setting) else name
        try:
            return self._schema[key]
        except KeyError:
            raise UnknownSetting([key]) from None

    def _typed(self, setting: Setting[T], stored: JSONValue) -> T:
        """Fall back to the default for values an older version may have left."""
        if stored is None or stored is DELETE:
            return setting.default
        try:
            return setting.kind.parse(stored)
        except ParseError:
            if (setting.name, repr(stored)) not in self._warned:
                self._warned.add((setting.name, repr(stored)))
                log.warn(
                    "stored setting {name}={value!r} is invalid; using default {default!r}",
                    name=setting.name,
                    value=stored,
                    default=setting.default,
                )
            return setting.default

    @overload
    def get(self, name: Setting[T]) -> T: ...
    @overload
    def get(self, name: str) -> Any: ...
    def get(self, name: str | Setting[Any]) -> Any:
        setting = self._setting(name)
        return self._typed(setting, self._store.get(NAMESPACE, setting.name))

    def _parse(self, raw: Mapping[str | Setting[Any], object]) -> list[tuple[str, str, Any]]:
        """Check every value before storing any, so the admin sees all mistakes."""
        unknown = [name for name in raw if not isinstance(name, Setting) and name not in self._schema]
        if unknown:
            raise UnknownSetting(unknown)
        changes: list[tuple[str, str, Any]] = []
        problems: list[Problem] = []
        for name, value in raw.items():
            setting = self._setting(name)
            try:
                changes.append((NAMESPACE, setting.name, setting.kind.parse(value)))
            except ParseError as e:
                problems.append(Problem(setting.name, e.reason, setting.kind.allowed()))
        if problems:
            raise InvalidSetting(problems)
        return changes

    def set(self, name: str | Setting[Any], raw: object) -> None:
        self._store.apply(self._parse({name: raw}))

    def set_many(self, raw: Mapping[str | Setting[Any], object]) -> None:
        """Store all values atomically, or none if any is invalid."""
        self._store.apply(self._parse(raw))

    def reset(self, name: str | Setting[Any]) -> None:
        self._store.delete(NAMESPACE, self._setting(name).name)

    def stored_problems(self) -> list[str]:
        """One line per stored setting that is not valid (checked at start): the
        appliance runs on with the default, and the line names namespace and key."""
        problems = []
        unreadable = getattr(self._store, "unreadable", None)
        for name, setting in self._schema.items():
            stored = self._store.get(NAMESPACE, name)
            if unreadable is not None and (NAMESPACE, name) in unreadable.found:
                reason = unreadable.found[NAMESPACE, name]
            elif stored is None:
                continue
            else:
                try:
                    setting.kind.parse(stored)
                    continue
                except ParseError as error:
                    reason = f"{error.reason.in_('en')}: {stored!r}"[:200]
            problems.append(
                f"{NAMESPACE}/{name}: stored value is invalid ({reason}); "
                f"using the default {setting.kind.display(setting.default)!r}"
            )
        return problems

    def describe(self, language: Language = "en", matching: str = "") -> list[Row]:
        """Rows for the admin table; ``matching`` filters by name or description."""
        needle = matching.strip().lower()
        rows = []
        for setting in self._schema.values():
            description = setting.description(language)
            if needle not in setting.name.lower() and needle not in description.lower():
                continue
            value = self.get(setting)
            kind = setting.kind
            rows.append(
                Row(
                    name=setting.name,
                    description=description,
                    value=kind.display(value),
                    default=kind.display(setting.default),
                    is_default=value == setting.default,
                    kind=kind.name,
                    allowed=kind.allowed().in_(language),
                    choices=kind.choices(),
                )
            )
        return rows

    def subscribe(
        self,
        callback: SettingsCallback,
        names: Iterable[str | Setting[Any]] | None = None,
    ) -> Callable[[], None]:
        """Call ``callback(name, value)`` whenever a setting's effective value changes."""
        wanted = None if names is None else {self._setting(name).name for name in names}

        def observe(change: Change) -> None:
            if change.namespace != NAMESPACE or change.key not in self._schema:
                return
            if wanted is not None and change.key not in wanted:
                return
            setting = self._schema[change.key]
            new = self._typed(setting, change.new)
            if new != self._typed(setting, change.old):
                callback(change.key, new)

        return self._store.subscribe(observe)
