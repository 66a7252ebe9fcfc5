"""The directory's settings: the numbering plan and users from Asterisk."""

from __future__ import annotations

import re

import phonenumbers

from appliance.settingkinds import (
    Choice,
    Pattern,
    Setting,
    Text,
    boolean,
)

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
DIR_PBX_USERS = boolean(
    "DIR_PBX_USERS", True,
    "Create a user for every new PJSIP endpoint of Asterisk",
    "Für jeden neuen PJSIP-Endpunkt von Asterisk einen Benutzer anlegen",
)  # fmt: skip
