"""One way to compare telephone numbers: E.164 (``+4930123456``), made by
``phonenumbers`` from the country and area code the admin set.

Every feature that compares an external number with a stored one (contact
lookup, forward breakthrough caller IDs, the missed-call exclusion list, the
journal) normalises both sides here, so ``+49 30 123456``, ``0049 30 123456``,
``030 123456`` and, with area code 30, ``123456`` are one number.  Short
unprefixed numbers are internal extensions and stay as they are; text that is
no number comes back stripped of formatting, so it still equals itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import phonenumbers

_DIGITS = re.compile(r"[0-9]+")
_NOISE = re.compile(r"[\s()./-]")

# The shapes of numbers every feature checks input against, in one place.
# \Z, not $: "$" also matches before a final newline, so "200\n" would pass.
EXTENSION = re.compile(r"^[0-9]{2,8}\Z")
"""An internal number: a user's extension, a group's number, a PJSIP line."""
EXTERNAL_NUMBER = re.compile(r"^\+?[0-9]{3,20}\Z")
"""A number outside the appliance as dialled or received, a leading ``+`` allowed."""
FORWARD_TARGET = re.compile(r"^\+?[0-9]{2,20}\Z")
"""Where a forward sends calls: an extension or an external number."""
TYPED_NUMBER = re.compile(r"^[0-9]{2,20}\Z")
"""A number a user types on the web page for a callback now: digits only."""

INTERNAL_MAX_DIGITS = 4
"""Unprefixed numbers this short are extensions, never local numbers."""


def valid_region(code: str) -> bool:
    """A country as ``phonenumbers`` knows it (ISO 3166 code: DE, AT, CH, US)."""
    return code.upper() in phonenumbers.SUPPORTED_REGIONS


@dataclass(frozen=True)
class NumberPlan:
    """How numbers dialled or received here map to E.164 (defaults: Germany)."""

    region: str = "DE"
    area: str = ""
    """The local area code without the national prefix (``30`` for Berlin)."""
    internal_max_digits: int = INTERNAL_MAX_DIGITS

    def normalize(self, raw: str) -> str:
        """The canonical form of ``raw``."""
        return _normalize(str(raw or ""), self.region.upper(), self.area, self.internal_max_digits)

    @property
    def country_code(self) -> str:
        return str(phonenumbers.country_code_for_region(self.region.upper()) or "")


@lru_cache(maxsize=8192)
def _normalize(raw: str, region: str, area: str, internal_max: int) -> str:
    number = _NOISE.sub("", raw)
    plus = number.startswith("+")
    digits = number[1:] if plus else number
    if not _DIGITS.fullmatch(digits):
        return number
    if not plus and not digits.startswith("0"):
        if not area or len(digits) <= internal_max:
            return digits
        country = phonenumbers.country_code_for_region(region)
        if not country:
            return digits
        plus, digits = True, f"{country}{area.lstrip('0')}{digits}"
    try:
        parsed = phonenumbers.parse(("+" if plus else "") + digits, region)
    except phonenumbers.NumberParseException:
        return number
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def plan_from(get: Callable[[str], object]) -> NumberPlan:
    """The plan the admin set (settings PHONE_COUNTRY and PHONE_AREA), read on use."""
    return NumberPlan(region=str(get("PHONE_COUNTRY") or "DE"), area=str(get("PHONE_AREA") or ""))


OLD_PLAN = ("contacts_config", "plan")
"""Where an earlier version kept the plan, hidden: ``{"country": "49", "area": "30"}``."""


def migrate_old_plan(store: Any, settings: Any) -> None:
    """Move a plan an earlier version kept in the store into the visible settings (unless
    the admin set those already) and delete the old key."""
    old = store.get(*OLD_PLAN)
    if old is None:
        return
    changes: dict[str, str] = {}
    if isinstance(old, dict):
        country = str(old.get("country", "")).lstrip("+")
        region = phonenumbers.region_code_for_country_code(int(country)) if country.isdigit() else "ZZ"
        if region != "ZZ" and store.get("settings", "PHONE_COUNTRY") is None:
            changes["PHONE_COUNTRY"] = region
        area = str(old.get("area", "")).lstrip("0")
        if area.isdigit() and store.get("settings", "PHONE_AREA") is None:
            changes["PHONE_AREA"] = area
    if changes:
        settings.set_many(changes)
    store.delete(*OLD_PLAN)
