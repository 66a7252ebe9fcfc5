"""Typed settings over the store: parsing, messages, atomic saves, change notification."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from twisted.logger import LogLevel, capturedLogs

from appliance import settings as s
from appliance.settings import SCHEMA, InvalidSetting, Settings, UnknownSetting
from appliance.store import DELETE
from appliance.testing import MemoryStore

NAMES = [
    "CC_OFFER", "CC_BUSY_TONE", "CC_CCNR_ENABLED", "CC_EXTERNAL", "CC_TIMEOUT", "CC_WAIT_TIME",
    "CC_DTMF_KEY", "CC_TARGET_RING_TIME", "CW_DEFAULT", "CW_RING_TIME",
    "MC_RECIPIENTS", "MC_MAIL_IF_PICKED_UP", "MC_CALLER_AS_SENDER", "MC_ATTACH_VCARD",
    "MC_LINK_PREFIX", "MC_EXCLUDE_INTERNAL", "MC_EXCLUDE_SUPPRESSED", "MC_EXCLUDE_UNRESOLVED",
    "MC_EXCLUDE_REPEAT_SAME_DAY", "MC_EXCLUDE_REPEAT_UNTIL_LOGIN", "MC_EXCLUDE_SHORT_RING",
    "MC_EXCLUDE_NUMBERS", "MC_LANGUAGE", "JOURNAL_ENABLED", "JOURNAL_RETENTION_DAYS",
    "JOURNAL_MAX_ENTRIES", "FWD_DISPLAY", "GROUP_DISPLAY", "FWD_DISPLAY_NUMBER", "FWD_DISPLAY_WIDTH",
    "FWD_BREAKTHROUGH_USERS", "FWD_BREAKTHROUGH_GROUPS", "FWD_BREAKTHROUGH_CALLERIDS",
    "FWD_MAX_HOPS", "PHONE_COUNTRY", "PHONE_AREA", "DIR_PBX_USERS",
    "HOLIDAY_ICAL_URL", "HOLIDAY_ICAL_REFRESH",
]  # fmt: skip

DEFAULTS = {
    "CC_OFFER": True, "CC_BUSY_TONE": False, "CC_CCNR_ENABLED": False, "CC_EXTERNAL": False,
    "CC_TIMEOUT": 60, "CC_WAIT_TIME": 20, "CC_DTMF_KEY": "5",
    "CC_TARGET_RING_TIME": 60, "CW_DEFAULT": False, "CW_RING_TIME": 20, "MC_RECIPIENTS": "all",
    "MC_MAIL_IF_PICKED_UP": False, "MC_CALLER_AS_SENDER": False, "MC_ATTACH_VCARD": True,
    "MC_LINK_PREFIX": "tel:", "MC_EXCLUDE_INTERNAL": False, "MC_EXCLUDE_SUPPRESSED": False,
    "MC_EXCLUDE_UNRESOLVED": False, "MC_EXCLUDE_REPEAT_SAME_DAY": False,
    "MC_EXCLUDE_REPEAT_UNTIL_LOGIN": False, "MC_EXCLUDE_SHORT_RING": False, "MC_EXCLUDE_NUMBERS": [],
    "MC_LANGUAGE": "", "JOURNAL_ENABLED": True, "JOURNAL_RETENTION_DAYS": 90,
    "JOURNAL_MAX_ENTRIES": 500, "FWD_DISPLAY": True, "GROUP_DISPLAY": True, "FWD_DISPLAY_NUMBER": False,
    "FWD_DISPLAY_WIDTH": 32, "FWD_BREAKTHROUGH_USERS": [],
    "FWD_BREAKTHROUGH_GROUPS": [], "FWD_BREAKTHROUGH_CALLERIDS": [], "FWD_MAX_HOPS": 5,
    "PHONE_COUNTRY": "DE", "PHONE_AREA": "", "DIR_PBX_USERS": True,
    "HOLIDAY_ICAL_URL": "", "HOLIDAY_ICAL_REFRESH": 60,
}  # fmt: skip

VALID: list[tuple[str, object, object]] = [
    # boolean
    *[("CC_OFFER", raw, True) for raw in [True, "on", "ON", " true ", "1", "yes", "Ja", "JA"]],
    *[("CC_OFFER", raw, False) for raw in [False, "off", "Off", "false", "0", "no", "nein", "NEIN "]],
    # integer
    ("CC_TIMEOUT", "1", 1),
    ("CC_TIMEOUT", " 10080 ", 10080),
    ("CC_TIMEOUT", 90, 90),
    ("CC_TIMEOUT", "+30", 30),
    ("CC_WAIT_TIME", "5", 5),
    ("CC_WAIT_TIME", 300, 300),
    ("FWD_MAX_HOPS", "20", 20),
    ("FWD_MAX_HOPS", 1, 1),
    # choice
    *[("CC_DTMF_KEY", key, key) for key in "0123456789*#"],
    ("CC_DTMF_KEY", 7, "7"),
    ("MC_RECIPIENTS", "none", "none"),
    ("MC_RECIPIENTS", "First", "first"),
    ("MC_RECIPIENTS", " LAST", "last"),
    ("MC_LANGUAGE", "en", "en"),
    ("MC_LANGUAGE", " ", ""),
    # text
    ("MC_LINK_PREFIX", "tel:", "tel:"),
    ("MC_LINK_PREFIX", "phone:", "phone:"),
    ("MC_LINK_PREFIX", "callto:", "callto:"),
    ("MC_LINK_PREFIX", "", ""),
    ("MC_LINK_PREFIX", "  ", ""),
    ("MC_LINK_PREFIX", "abcdefghi:", "abcdefghi:"),
    ("MC_LINK_PREFIX", "x-a.b+c:", "x-a.b+c:"),
    # lists
    ("MC_EXCLUDE_NUMBERS", "", []),
    ("MC_EXCLUDE_NUMBERS", "100, +4930123\n*21#\n100", ["100", "+4930123", "*21#"]),
    ("MC_EXCLUDE_NUMBERS", "030 123456\r\n+49 (30)  123-456\n\n", ["030 123456", "+49 (30) 123-456"]),
    ("PHONE_COUNTRY", "at", "AT"),
    ("PHONE_AREA", "030", "030"),
    ("PHONE_AREA", "", ""),
    ("MC_EXCLUDE_NUMBERS", ["0301234", " 110 "], ["0301234", "110"]),
    ("MC_EXCLUDE_NUMBERS", ("112",), ["112"]),
    ("FWD_BREAKTHROUGH_USERS", "100\n101,102", ["100", "101", "102"]),
    ("FWD_BREAKTHROUGH_GROUPS", "reception, switch_board-2", ["reception", "switch_board-2"]),
    ("FWD_BREAKTHROUGH_CALLERIDS", ["+49301234567"], ["+49301234567"]),
]

INVALID: list[tuple[str, object, str]] = [
    ("CC_OFFER", "maybe", "'maybe' is not on or off"),
    ("CC_OFFER", 1, "1 is not on or off"),
    ("CC_OFFER", None, "None is not on or off"),
    ("CC_OFFER", "", "'' is not on or off"),
    ("CC_TIMEOUT", "abc", "'abc' is not a whole number"),
    ("CC_TIMEOUT", "1.5", "'1.5' is not a whole number"),
    ("CC_TIMEOUT", 1.0, "1.0 is not a whole number"),
    ("CC_TIMEOUT", True, "True is not a whole number"),
    ("CC_TIMEOUT", "", "'' is not a whole number"),
    ("CC_TIMEOUT", "١٢", "'١٢' is not a whole number"),
    ("CC_TIMEOUT", "0", "'0' is out of range"),
    ("CC_TIMEOUT", 10081, "10081 is out of range"),
    ("CC_WAIT_TIME", "4", "'4' is out of range"),
    ("CC_WAIT_TIME", "301", "'301' is out of range"),
    ("FWD_MAX_HOPS", "21", "'21' is out of range"),
    ("FWD_MAX_HOPS", "-1", "'-1' is out of range"),
    ("CC_DTMF_KEY", "55", "'55' is not one of the choices"),
    ("CC_DTMF_KEY", "A", "'A' is not one of the choices"),
    ("CC_DTMF_KEY", "", "'' is not one of the choices"),
    ("MC_RECIPIENTS", "everyone", "'everyone' is not one of the choices"),
    ("MC_LANGUAGE", "french", "'french' is not valid"),
    ("MC_LINK_PREFIX", "tel", "'tel' is not valid"),
    ("MC_LINK_PREFIX", "abcdefghij:", "'abcdefghij:' is not valid"),
    ("MC_LINK_PREFIX", ":", "':' is not valid"),
    ("MC_LINK_PREFIX", "java script:", "'java script:' is not valid"),
    ("MC_LINK_PREFIX", "<b>:", "'<b>:' is not valid"),
    ("MC_LINK_PREFIX", None, "None is not valid"),
    ("MC_EXCLUDE_NUMBERS", "100, 10a", "'10a' is not allowed"),
    ("MC_EXCLUDE_NUMBERS", "030-1234\nx\n0 x", "'x', '0 x' are not allowed"),
    ("PHONE_COUNTRY", "XX", "'XX' is not one of the choices"),
    ("PHONE_AREA", "30a", "'30a' is not valid"),
    ("MC_EXCLUDE_NUMBERS", "1+2", "'1+2' is not allowed"),
    ("MC_EXCLUDE_NUMBERS", [100], "100 is not allowed"),
    ("MC_EXCLUDE_NUMBERS", 100, "100 is not a list"),
    ("FWD_BREAKTHROUGH_USERS", "100\n*21", "'*21' is not allowed"),
    ("FWD_BREAKTHROUGH_USERS", "100 101", "'100 101' is not allowed"),
    ("FWD_BREAKTHROUGH_GROUPS", "sales\nteam!", "'team!' is not allowed"),
    ("FWD_BREAKTHROUGH_CALLERIDS", "+49 30 12#a", "'+49 30 12#a' is not allowed"),
]


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def settings(store: MemoryStore) -> Settings:
    return Settings(store)


def test_schema_names() -> None:
    """The schema holds exactly the documented keys, in table order."""
    assert list(SCHEMA) == NAMES


def test_defaults(settings: Settings) -> None:
    """An empty store gives every documented default."""
    assert {name: settings.get(name) for name in NAMES} == DEFAULTS


@pytest.mark.parametrize("name", NAMES)
def test_default_is_canonical(name: str) -> None:
    """Each default parses to itself and its display text parses back to it."""
    setting = SCHEMA[name]
    assert setting.kind.parse(setting.default) == setting.default
    assert setting.kind.parse(setting.kind.display(setting.default)) == setting.default


@pytest.mark.parametrize(("name", "raw", "expected"), VALID)
def test_valid_input(
    settings: Settings, store: MemoryStore, name: str, raw: object, expected: object
) -> None:
    """Accepted input is stored as its canonical typed value and read back as such."""
    settings.set(name, raw)
    assert settings.get(name) == expected
    assert store.get("settings", name) == expected


@pytest.mark.parametrize(("name", "raw", "expected"), VALID)
def test_display_round_trips(name: str, raw: object, expected: Any) -> None:
    """What the table shows for a value can be typed back in to give the same value."""
    kind = SCHEMA[name].kind
    assert kind.parse(kind.display(expected)) == expected


@pytest.mark.parametrize(("name", "raw", "reason"), INVALID)
def test_invalid_input(settings: Settings, store: MemoryStore, name: str, raw: object, reason: str) -> None:
    """Refused input raises InvalidSetting naming key, reason and what is allowed; nothing is stored."""
    with pytest.raises(InvalidSetting) as caught:
        settings.set(name, raw)
    allowed = SCHEMA[name].kind.allowed().en
    assert str(caught.value) == f"{name}: {reason} (allowed: {allowed})"
    assert store.items("settings") == []


def test_message_example() -> None:
    """The message for a non-number CC_TIMEOUT reads exactly as the admin page shows it."""
    with pytest.raises(InvalidSetting) as caught:
        Settings(MemoryStore()).set("CC_TIMEOUT", "abc")
    assert str(caught.value) == "CC_TIMEOUT: 'abc' is not a whole number (allowed: 1 to 10080 minutes)"
    assert caught.value.message("de") == (
        "CC_TIMEOUT: 'abc' ist keine ganze Zahl (erlaubt: 1 bis 10080 Minuten)"
    )


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("CC_OFFER", "on/off, true/false, yes/no, ja/nein, 1/0"),
        ("CC_WAIT_TIME", "5 to 300 seconds"),
        ("FWD_MAX_HOPS", "1 to 20"),
        ("CC_DTMF_KEY", "one of 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, *, #"),
        ("MC_RECIPIENTS", "one of none, first, last, all"),
        ("MC_LINK_PREFIX", "empty (no links) or up to 9 characters plus ':', e.g. tel:, phone:, callto:"),
        (
            "MC_EXCLUDE_NUMBERS",
            "phone numbers, one per line (digits, leading +, * and #; spaces, /, - and () inside)",
        ),
    ],
)
def test_allowed_text(name: str, allowed: str) -> None:
    """Each kind tells the admin in plain words what it accepts."""
    assert SCHEMA[name].kind.allowed().en == allowed


def test_long_input_is_shortened_in_message(settings: Settings) -> None:
    """A huge bad value does not blow up the error message."""
    with pytest.raises(InvalidSetting) as caught:
        settings.set("CC_TIMEOUT", "x" * 10_000)
    assert len(str(caught.value)) < 200


def test_unknown_setting(settings: Settings, store: MemoryStore) -> None:
    """Names outside the schema raise UnknownSetting everywhere and store nothing."""
    operations: list[Callable[[], object]] = [
        lambda: settings.get("CC_TIMEOUTS"),
        lambda: settings.set("CC_TIMEOUTS", "5"),
        lambda: settings.set_many({"CC_TIMEOUT": "5", "cc_offer": "on"}),
        lambda: settings.reset("NOPE"),
        lambda: settings.subscribe(lambda name, value: None, names=["NOPE"]),
    ]
    for operation in operations:
        with pytest.raises(UnknownSetting):
            operation()
    assert store.items("settings") == []


def test_typed_access_by_setting_object(settings: Settings) -> None:
    """The module's Setting constants work in place of names."""
    settings.set(s.CC_TIMEOUT, "15")
    assert settings.get(s.CC_TIMEOUT) == 15
    settings.reset(s.CC_TIMEOUT)
    assert settings.get(s.CC_TIMEOUT) == 60


def test_set_many_stores_all_in_one_batch(store: MemoryStore) -> None:
    """set_many writes every value in a single atomic apply."""
    batches: list[list[tuple[str, str, object]]] = []
    original = store.apply

    def spy(changes: Any) -> None:
        batches.append(list(changes))
        original(batches[-1])

    store.apply = spy  # type: ignore[method-assign]
    Settings(store).set_many({"CC_TIMEOUT": "30", "CC_OFFER": "off", "MC_EXCLUDE_NUMBERS": "110\n112"})
    assert batches == [
        [
            ("settings", "CC_TIMEOUT", 30),
            ("settings", "CC_OFFER", False),
            ("settings", "MC_EXCLUDE_NUMBERS", ["110", "112"]),
        ]
    ]


def test_set_many_all_or_nothing(settings: Settings, store: MemoryStore) -> None:
    """One bad value stores nothing, and the error lists every bad key."""
    with pytest.raises(InvalidSetting) as caught:
        settings.set_many({"CC_TIMEOUT": "0", "CC_OFFER": "off", "CC_DTMF_KEY": "x"})
    assert store.items("settings") == []
    assert [problem.name for problem in caught.value.problems] == ["CC_TIMEOUT", "CC_DTMF_KEY"]
    assert str(caught.value) == (
        "CC_TIMEOUT: '0' is out of range (allowed: 1 to 10080 minutes); "
        "CC_DTMF_KEY: 'x' is not one of the choices (allowed: one of 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, *, #)"
    )


def test_reset(settings: Settings, store: MemoryStore) -> None:
    """reset removes the stored value so the default applies again."""
    settings.set("MC_LANGUAGE", "en")
    settings.reset("MC_LANGUAGE")
    assert settings.get("MC_LANGUAGE") == ""
    assert store.items("settings") == []


def test_stale_stored_value_falls_back_to_default(store: MemoryStore) -> None:
    """A stored value that no longer validates reads as the default and logs one warning."""
    store.put("settings", "CC_TIMEOUT", 99999)
    settings = Settings(store)
    with capturedLogs() as events:
        assert settings.get("CC_TIMEOUT") == 60
        assert settings.get("CC_TIMEOUT") == 60
    warnings = [e for e in events if e.get("log_level") == LogLevel.warn]
    assert len(warnings) == 1
    assert warnings[0]["name"] == "CC_TIMEOUT"
    assert warnings[0]["value"] == 99999


def test_stored_value_in_old_text_form_is_accepted(store: MemoryStore) -> None:
    """A stored value that still parses (e.g. "on" as text) gives its typed value."""
    store.put("settings", "CC_OFFER", "off")
    assert Settings(store).get("CC_OFFER") is False


def test_describe_rows(settings: Settings) -> None:
    """describe gives one row per setting with display strings and kind information."""
    settings.set("CC_TIMEOUT", 30)
    settings.set("MC_EXCLUDE_NUMBERS", "110\n112")
    rows = {row.name: row for row in settings.describe("en")}
    assert list(rows) == NAMES
    assert rows["CC_TIMEOUT"] == s.Row(
        name="CC_TIMEOUT",
        description="Minutes until an open callback request is deleted",
        value="30",
        default="60",
        is_default=False,
        kind="integer",
        allowed="1 to 10080 minutes",
        choices=(),
    )
    assert (rows["MC_EXCLUDE_NUMBERS"].value, rows["MC_EXCLUDE_NUMBERS"].default) == ("110\n112", "")
    assert (rows["CC_OFFER"].value, rows["CC_OFFER"].choices, rows["CC_OFFER"].is_default) == (
        "on",
        ("on", "off"),
        True,
    )
    assert rows["MC_RECIPIENTS"].choices == ("none", "first", "last", "all")


def test_describe_german(settings: Settings) -> None:
    """In German the descriptions and allowed texts are German; values stay typeable."""
    row = settings.describe("de", "cc_wait")[0]
    assert row.description == "Sekunden, die der Rückruf beim Anfordernden klingelt"
    assert row.allowed == "5 bis 300 Sekunden"
    assert row.value == "20"


def test_every_setting_described_in_both_languages() -> None:
    """Every key has a distinct German and English description."""
    for setting in SCHEMA.values():
        assert setting.de and setting.en and setting.de != setting.en, setting.name


@pytest.mark.parametrize(
    ("language", "matching", "expected"),
    [
        (
            "en",
            "fwd_break",
            ["FWD_BREAKTHROUGH_USERS", "FWD_BREAKTHROUGH_GROUPS", "FWD_BREAKTHROUGH_CALLERIDS"],
        ),
        ("en", "vCard", ["MC_ATTACH_VCARD"]),
        ("de", "Türsprechstellen", ["MC_EXCLUDE_NUMBERS"]),
        ("en", "Türsprechstellen", []),
        ("en", "  CC_TIMEOUT ", ["CC_TIMEOUT"]),
    ],
)
def test_describe_filter(settings: Settings, language: Any, matching: str, expected: list[str]) -> None:
    """The filter matches key names and descriptions in the page's language, ignoring case."""
    assert [row.name for row in settings.describe(language, matching)] == expected


def test_subscribe_reports_typed_changes(settings: Settings, store: MemoryStore) -> None:
    """Subscribers get the new typed value on set and the default on reset."""
    seen: list[tuple[str, object]] = []
    settings.subscribe(lambda name, value: seen.append((name, value)))
    settings.set("CC_TIMEOUT", "30")
    settings.set_many({"CC_OFFER": "nein", "FWD_BREAKTHROUGH_USERS": "100"})
    settings.reset("CC_TIMEOUT")
    assert seen == [
        ("CC_TIMEOUT", 30),
        ("CC_OFFER", False),
        ("FWD_BREAKTHROUGH_USERS", ["100"]),
        ("CC_TIMEOUT", 60),
    ]


def test_subscribe_sees_changes_through_other_writers(store: MemoryStore) -> None:
    """A change saved through another Settings object on the same store reaches the subscriber."""
    seen: list[tuple[str, object]] = []
    Settings(store).subscribe(lambda name, value: seen.append((name, value)))
    Settings(store).set("MC_LINK_PREFIX", "callto:")
    assert seen == [("MC_LINK_PREFIX", "callto:")]


def test_subscribe_filters(settings: Settings, store: MemoryStore) -> None:
    """Only the named settings are reported; other namespaces and unknown keys never are."""
    seen: list[tuple[str, object]] = []
    settings.subscribe(lambda name, value: seen.append((name, value)), names=["CC_OFFER", s.CC_TIMEOUT])
    settings.set("CC_WAIT_TIME", 30)
    store.put("users", "CC_OFFER", "x")
    store.put("settings", "LEGACY_KEY", 1)
    settings.set("CC_OFFER", "off")
    assert seen == [("CC_OFFER", False)]


def test_subscribe_silent_when_effective_value_unchanged(settings: Settings, store: MemoryStore) -> None:
    """Storing the default explicitly, or an invalid value over the default, reports nothing."""
    seen: list[tuple[str, object]] = []
    settings.subscribe(lambda name, value: seen.append((name, value)))
    settings.set("CC_TIMEOUT", 60)
    settings.set("CC_OFFER", "on")
    store.put("settings", "CC_WAIT_TIME", "garbage")
    store.apply([("settings", "CC_WAIT_TIME", DELETE)])
    assert seen == []


def test_unsubscribe(settings: Settings) -> None:
    """After unsubscribing, changes are no longer reported."""
    seen: list[tuple[str, object]] = []
    unsubscribe = settings.subscribe(lambda name, value: seen.append((name, value)))
    unsubscribe()
    settings.set("CC_OFFER", "off")
    assert seen == []


def test_setting_objects_with_list_defaults_work_as_keys() -> None:
    """A Setting with a list default can be passed as the key itself (identity, not value)."""
    from appliance.settings import FWD_BREAKTHROUGH_USERS, Settings
    from appliance.testing import MemoryStore

    settings = Settings(MemoryStore())
    settings.set(FWD_BREAKTHROUGH_USERS, "200, 201")
    assert settings.get(FWD_BREAKTHROUGH_USERS) == ["200", "201"]
