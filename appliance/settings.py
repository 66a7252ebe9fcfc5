"""The admin-editable settings: a schema of typed keys over the store.

The admin edits these as text in a key/value table (like the UCware admin
client), so every kind parses forgiving text input into one canonical typed
value, and every error says which key was wrong and what it accepts.  Values
live in the store namespace ``settings`` as typed JSON; features read them on
use or subscribe, so a saved change takes effect without a restart.

Each feature declares its keys in its own module (``appliance/callback/keys.py``,
``missed/keys.py``, ``forwarding/keys.py``, ``appliance/directorykeys.py``) with
the kinds of `appliance.settingkinds`; this module keeps the page's order
(``SCHEMA``) and the store machinery, and re-exports every key so features
read ``keys.CC_OFFER`` as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, TypeAlias, overload

from twisted.logger import Logger

from appliance.callback.keys import (
    CC_BUSY_TONE,
    CC_CCNR_ENABLED,
    CC_DTMF_KEY,
    CC_EXTERNAL,
    CC_OFFER,
    CC_TARGET_RING_TIME,
    CC_TIMEOUT,
    CC_WAIT_TIME,
    CW_DEFAULT,
    CW_RING_TIME,
)
from appliance.directorykeys import DIR_PBX_USERS, PHONE_AREA, PHONE_COUNTRY
from appliance.forwarding.keys import (
    FWD_BREAKTHROUGH_CALLERIDS,
    FWD_BREAKTHROUGH_GROUPS,
    FWD_BREAKTHROUGH_USERS,
    FWD_DISPLAY,
    FWD_DISPLAY_NUMBER,
    FWD_DISPLAY_WIDTH,
    FWD_MAX_HOPS,
    GROUP_DISPLAY,
    HOLIDAY_ICAL_REFRESH,
    HOLIDAY_ICAL_URL,
)
from appliance.missed.keys import (
    JOURNAL_ENABLED,
    JOURNAL_MAX_ENTRIES,
    JOURNAL_RETENTION_DAYS,
    MC_ATTACH_VCARD,
    MC_CALLER_AS_SENDER,
    MC_EXCLUDE_INTERNAL,
    MC_EXCLUDE_NUMBERS,
    MC_EXCLUDE_REPEAT_SAME_DAY,
    MC_EXCLUDE_REPEAT_UNTIL_LOGIN,
    MC_EXCLUDE_SHORT_RING,
    MC_EXCLUDE_SUPPRESSED,
    MC_EXCLUDE_UNRESOLVED,
    MC_LANGUAGE,
    MC_LINK_PREFIX,
    MC_MAIL_IF_PICKED_UP,
    MC_RECIPIENTS,
)
from appliance.settingkinds import (
    Boolean,
    Choice,
    Integer,
    Kind,
    Language,
    ListOf,
    ParseError,
    Pattern,
    Setting,
    T,
    Text,
)
from appliance.store import DELETE, Change, IKeyValueStore, JSONValue

log = Logger()

NAMESPACE = "settings"

__all__ = [  # the keys of every feature and the kinds, for ``keys.<NAME>`` and the pages
    "CC_BUSY_TONE",
    "CC_CCNR_ENABLED",
    "CC_DTMF_KEY",
    "CC_EXTERNAL",
    "CC_OFFER",
    "CC_TARGET_RING_TIME",
    "CC_TIMEOUT",
    "CC_WAIT_TIME",
    "CW_DEFAULT",
    "CW_RING_TIME",
    "DIR_PBX_USERS",
    "FWD_BREAKTHROUGH_CALLERIDS",
    "FWD_BREAKTHROUGH_GROUPS",
    "FWD_BREAKTHROUGH_USERS",
    "FWD_DISPLAY",
    "FWD_DISPLAY_NUMBER",
    "FWD_DISPLAY_WIDTH",
    "FWD_MAX_HOPS",
    "GROUP_DISPLAY",
    "HOLIDAY_ICAL_REFRESH",
    "HOLIDAY_ICAL_URL",
    "JOURNAL_ENABLED",
    "JOURNAL_MAX_ENTRIES",
    "JOURNAL_RETENTION_DAYS",
    "MC_ATTACH_VCARD",
    "MC_CALLER_AS_SENDER",
    "MC_EXCLUDE_INTERNAL",
    "MC_EXCLUDE_NUMBERS",
    "MC_EXCLUDE_REPEAT_SAME_DAY",
    "MC_EXCLUDE_REPEAT_UNTIL_LOGIN",
    "MC_EXCLUDE_SHORT_RING",
    "MC_EXCLUDE_SUPPRESSED",
    "MC_EXCLUDE_UNRESOLVED",
    "MC_LANGUAGE",
    "MC_LINK_PREFIX",
    "MC_MAIL_IF_PICKED_UP",
    "MC_RECIPIENTS",
    "PHONE_AREA",
    "PHONE_COUNTRY",
    "SCHEMA",
    "Boolean",
    "Choice",
    "Integer",
    "InvalidSetting",
    "Kind",
    "Language",
    "ListOf",
    "ParseError",
    "Pattern",
    "Problem",
    "Row",
    "Setting",
    "SettingError",
    "Settings",
    "SettingsCallback",
    "T",
    "Text",
    "UnknownSetting",
]


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
