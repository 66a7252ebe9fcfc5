"""The missed-call mail's and journal's settings (seed 001)."""

from __future__ import annotations

import re

from appliance.settingkinds import (
    NUMBERS,
    Choice,
    Integer,
    Pattern,
    Setting,
    Text,
    boolean,
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
MC_RECIPIENTS = Setting(
    "MC_RECIPIENTS", Choice(("none", "first", "last", "all")), "all",
    "Who gets the missed-call mail: none, first, last or all unanswered participants",
    "Wer die Mail zum verpassten Anruf erhält: keiner, erster, letzter oder alle "
    "Teilnehmer, die nicht abgenommen haben",
)  # fmt: skip
MC_MAIL_IF_PICKED_UP = boolean(
    "MC_MAIL_IF_PICKED_UP", False,
    "Send the mail even if someone else answered (e.g. pickup)",
    "Mail auch senden, wenn ein anderer abgenommen hat (z.B. Pickup)",
)  # fmt: skip
MC_CALLER_AS_SENDER = boolean(
    "MC_CALLER_AS_SENDER", False,
    "Use the caller's e-mail address as sender",
    "E-Mail-Adresse des Anrufers als Absender verwenden",
)  # fmt: skip
MC_ATTACH_VCARD = boolean(
    "MC_ATTACH_VCARD", True,
    "Attach the caller's contact as vCard",
    "Kontakt des Anrufers als vCard anhängen",
)  # fmt: skip
MC_LINK_PREFIX = Setting(
    "MC_LINK_PREFIX", _LINK_PREFIX, "tel:",
    "Link prefix for phone numbers in the mail; empty = no links",
    "Link-Präfix für Rufnummern in der Mail; leer = keine Links",
)  # fmt: skip
MC_EXCLUDE_INTERNAL = boolean(
    "MC_EXCLUDE_INTERNAL", False,
    "No mail for internal callers",
    "Keine Mail bei internen Anrufern",
)  # fmt: skip
MC_EXCLUDE_SUPPRESSED = boolean(
    "MC_EXCLUDE_SUPPRESSED", False,
    "No mail if the caller ID is suppressed",
    "Keine Mail bei unterdrückter Rufnummer",
)  # fmt: skip
MC_EXCLUDE_UNRESOLVED = boolean(
    "MC_EXCLUDE_UNRESOLVED", False,
    "No mail if no contact is found for the caller",
    "Keine Mail, wenn kein Kontakt zum Anrufer gefunden wird",
)  # fmt: skip
MC_EXCLUDE_REPEAT_SAME_DAY = boolean(
    "MC_EXCLUDE_REPEAT_SAME_DAY", False,
    "No mail for a repeated call on the same day",
    "Keine Mail bei wiederholtem Anruf am selben Tag",
)  # fmt: skip
MC_EXCLUDE_REPEAT_UNTIL_LOGIN = boolean(
    "MC_EXCLUDE_REPEAT_UNTIL_LOGIN", False,
    "No mail for a repeated call until the user logs in again: a web login, the phone "
    "registering again, or marking the journal seen, whichever comes first",
    "Keine Mail bei wiederholtem Anruf, bis sich der Benutzer wieder anmeldet: Anmeldung "
    "am Web, erneute Registrierung des Telefons oder Journal als gesehen markiert, was "
    "zuerst eintritt",
)  # fmt: skip
MC_EXCLUDE_SHORT_RING = boolean(
    "MC_EXCLUDE_SHORT_RING", False,
    "No mail if the phone rang less than 2 seconds",
    "Keine Mail, wenn es weniger als 2 Sekunden geklingelt hat",
)  # fmt: skip
MC_EXCLUDE_NUMBERS = Setting(
    "MC_EXCLUDE_NUMBERS", NUMBERS, [],
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
JOURNAL_ENABLED = boolean(
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
