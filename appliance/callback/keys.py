"""The callback's and call waiting's settings (seed 000: the CC_ keys of the key-value store)."""

from __future__ import annotations

from appliance.settingkinds import (
    MINUTES,
    SECONDS,
    Choice,
    Integer,
    Setting,
    boolean,
)

CC_OFFER = boolean(
    "CC_OFFER", True,
    "Offer automatic callback; off disables all other CC_ keys",
    "Automatischen Rückruf anbieten; aus deaktiviert alle anderen CC_-Schlüssel",
)  # fmt: skip
CC_BUSY_TONE = boolean(
    "CC_BUSY_TONE", False,
    "Play busy tone instead of the callback announcement",
    "Besetztton statt der Rückruf-Ansage spielen",
)  # fmt: skip
CC_CCNR_ENABLED = boolean(
    "CC_CCNR_ENABLED", False,
    "Also offer callback when a reachable user does not answer (*39)",
    "Rückruf auch anbieten, wenn ein erreichbarer Teilnehmer nicht abnimmt (*39)",
)  # fmt: skip
CC_EXTERNAL = boolean(
    "CC_EXTERNAL", False,
    "Also offer callback to external callers",
    "Rückruf auch externen Anrufern anbieten",
)  # fmt: skip
CC_TIMEOUT = Setting(
    "CC_TIMEOUT", Integer(1, 10080, MINUTES), 60,
    "Minutes until an open callback request is deleted",
    "Minuten, bis ein offener Rückrufwunsch gelöscht wird",
)  # fmt: skip
CC_WAIT_TIME = Setting(
    "CC_WAIT_TIME", Integer(5, 300, SECONDS), 20,
    "Seconds the callback rings at the requester",
    "Sekunden, die der Rückruf beim Anfordernden klingelt",
)  # fmt: skip
CC_DTMF_KEY = Setting(
    "CC_DTMF_KEY", Choice(tuple("0123456789*#")), "5",
    "Key the caller presses to request a callback",
    "Taste, mit der der Anrufer den Rückruf anfordert",
)  # fmt: skip
CC_TARGET_RING_TIME = Setting(
    "CC_TARGET_RING_TIME", Integer(5, 300, SECONDS), 60,
    "Seconds the callback rings at the requested user once the requester answered",
    "Sekunden, die der Rückruf beim Angerufenen klingelt, nachdem der Anfordernde abgenommen hat",
)  # fmt: skip
CW_DEFAULT = boolean(
    "CW_DEFAULT", False,
    "Call waiting for users who did not choose: on = a second call rings during a call, "
    "off = a user in a call is busy",
    "Anklopfen für Benutzer ohne eigene Wahl: an = ein zweiter Anruf klingelt während "
    "eines Gesprächs, aus = ein Benutzer im Gespräch ist besetzt",
)  # fmt: skip
CW_RING_TIME = Setting(
    "CW_RING_TIME", Integer(3, 120, SECONDS), 20,
    "Seconds a waiting call rings while the user is in a call before the caller gets "
    "the busy treatment (busy forward, callback offer)",
    "Sekunden, die ein anklopfender Anruf während eines Gesprächs klingelt, bevor der "
    "Anrufer wie bei Besetzt behandelt wird (Umleitung bei Besetzt, Rückruf-Angebot)",
)  # fmt: skip
