"""Forwarding's settings: display, breakthrough, loops, the holiday calendar (seeds 002, 004)."""

from __future__ import annotations

import re

from appliance.settingkinds import (
    EXTENSIONS,
    GROUPS,
    MINUTES,
    NUMBERS,
    Integer,
    Pattern,
    Setting,
    Text,
    boolean,
)

FWD_DISPLAY = boolean(
    "FWD_DISPLAY", True,
    "Show 'Fwd for <forwarder>' to the target of unconditional and busy forwards",
    "Dem Ziel von sofortigen und Besetzt-Umleitungen 'Uml. für <Umleitender>' anzeigen",
)  # fmt: skip
GROUP_DISPLAY = boolean(
    "GROUP_DISPLAY", True,
    "A group call shows '<group name>: <caller>' to the members",
    "Ein Gruppenruf zeigt den Mitgliedern '<Gruppenname>: <Anrufer>'",
)  # fmt: skip
FWD_DISPLAY_NUMBER = boolean(
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
    "FWD_BREAKTHROUGH_USERS", EXTENSIONS, [],
    "Users (internal numbers) who may break through every forward",
    "Benutzer (interne Rufnummern), die jede Umleitung durchbrechen dürfen",
)  # fmt: skip
FWD_BREAKTHROUGH_GROUPS = Setting(
    "FWD_BREAKTHROUGH_GROUPS", GROUPS, [],
    "Groups whose members may break through every forward",
    "Gruppen, deren Mitglieder jede Umleitung durchbrechen dürfen",
)  # fmt: skip
FWD_BREAKTHROUGH_CALLERIDS = Setting(
    "FWD_BREAKTHROUGH_CALLERIDS", NUMBERS, [],
    "External caller IDs that may break through every forward",
    "Externe Rufnummern, die jede Umleitung durchbrechen dürfen",
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
    "HOLIDAY_ICAL_REFRESH", Integer(5, 10080, MINUTES), 60,
    "Minutes between two fetches of the holiday calendar (a failed fetch is retried within 5 minutes)",
    "Minuten zwischen zwei Abrufen des Feiertagskalenders (ein fehlgeschlagener Abruf wird "
    "nach spätestens 5 Minuten wiederholt)",
)  # fmt: skip
