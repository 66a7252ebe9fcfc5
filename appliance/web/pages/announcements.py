"""Admin: the announcements forwards may play (`appliance.announcements`): the
built-in ones, and the admin's own recordings (`appliance.recordings`), uploaded
here as WAV files, listed with the target to use in the API, and deleted once
no forward names them."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from appliance.announcements import PREFIX, Announcements
from appliance.forwarding.records import Forwards
from appliance.recordings import MAX_SECONDS, RecordingError, Recordings
from appliance.settings import Text
from appliance.web import i18n
from appliance.web.routing import NavEntry, Page, Router

i18n.add(
    {
        "nav_announcements": Text("Announcements", "Ansagen"),
        "announcements_title": Text("Announcements", "Ansagen"),
        "announcements_intro": Text(
            "A forward can play one of these instead of ringing a number (e.g. a group's forward "
            "outside business hours); the call ends after it.",
            "Eine Umleitung kann eine dieser Ansagen spielen, statt eine Nummer anzurufen (z.B. die "
            "Umleitung einer Gruppe außerhalb der Geschäftszeiten); danach endet der Anruf.",
        ),
        "announcement_name": Text("Announcement", "Ansage"),
        "announcement_target": Text("Target (API)", "Ziel (API)"),
        "announcement_length": Text("Length", "Länge"),
        "announcement_built_in": Text("built in, German and English", "eingebaut, Deutsch und Englisch"),
        "announcement_used_by": Text("Used by", "Verwendet von"),
        "recording_upload": Text("Upload your own announcement", "Eigene Ansage hochladen"),
        "recording_upload_hint": Text(
            "WAV, 16-bit PCM, mono, 8 or 16 kHz, up to {limit} seconds.",
            "WAV, 16 Bit PCM, mono, 8 oder 16 kHz, bis {limit} Sekunden.",
        ),
        "recording_label": Text("Label", "Bezeichnung"),
        "recording_file": Text("WAV file", "WAV-Datei"),
        "recording_saved": Text("Announcement uploaded.", "Ansage hochgeladen."),
        "recording_deleted": Text("Announcement deleted.", "Ansage gelöscht."),
        "recording_empty": Text("WAV file: please choose a file.", "WAV-Datei: bitte eine Datei wählen."),
        "recording_not_wav": Text(
            "WAV file: this is not a WAV file ({problem}).", "WAV-Datei: das ist keine WAV-Datei ({problem})."
        ),
        "recording_format": Text(
            "WAV file: {found}; needed is 16-bit PCM, mono, 8 or 16 kHz. Convert it e.g. with: {command}",
            "WAV-Datei: {found}; nötig sind 16 Bit PCM, mono, 8 oder 16 kHz. Umwandeln z.B. mit: {command}",
        ),
        "recording_short": Text(
            "WAV file: shorter than half a second.", "WAV-Datei: kürzer als eine halbe Sekunde."
        ),
        "recording_long": Text(
            "WAV file: {seconds} seconds; at most {limit} seconds.",
            "WAV-Datei: {seconds} Sekunden; höchstens {limit} Sekunden.",
        ),
        "recording_label_missing": Text("Label: please enter a label.", "Bezeichnung: bitte angeben."),
        "recording_label_bad": Text(
            "Label: at most {limit} characters, no control characters.",
            "Bezeichnung: höchstens {limit} Zeichen, keine Steuerzeichen.",
        ),
        "recording_unwritable": Text(
            "The file could not be written to {directory}; see the appliance's log.",
            "Die Datei konnte nicht nach {directory} geschrieben werden; siehe das Protokoll der Anlage.",
        ),
        "recording_unknown": Text("No such announcement.", "Diese Ansage gibt es nicht."),
        "recording_in_use": Text(
            "Still used by the forwards of {numbers}: change those first.",
            "Noch von den Umleitungen von {numbers} verwendet: zuerst diese ändern.",
        ),
        "recording_too_many": Text(
            "Too many announcements with this label.", "Zu viele Ansagen mit dieser Bezeichnung."
        ),
    }
)


class AnnouncementPages:
    def __init__(self, recordings: Recordings, announcements: Announcements, forwards: Forwards) -> None:
        self.recordings = recordings
        self.announcements = announcements
        self.forwards = forwards

    def install(self, router: Router) -> None:
        nav = NavEntry("/admin/announcements", "nav_announcements", "admin", order=46)
        router.route("/admin/announcements", self.show, access="admin", nav=nav)
        router.route("/admin/announcements", self.upload, access="admin", methods=["POST"], upload=True)
        router.route("/admin/announcements/<name>/delete", self.delete, access="admin", methods=["POST"])

    def show(self, page: Page) -> bytes:
        done = {"saved": "recording_saved", "deleted": "recording_deleted"}.get(page.arg("done"), "")
        return self._render(page, 200, message=page.t(done) if done else "")

    def upload(self, page: Page) -> Deferred[bytes]:
        label = page.arg("label")
        data = ((page.request.args or {}).get(b"file") or [b""])[0]
        return self.recordings.add(label, data).addCallbacks(
            lambda _: page.redirect("/admin/announcements", {"done": "saved"}),
            self._refused,
            errbackArgs=(page,),
            errbackKeywords={"label": label},
        )

    def delete(self, page: Page, name: str) -> Deferred[bytes]:
        return self.recordings.remove(name, self._uses().get(name, [])).addCallbacks(
            lambda _: page.redirect("/admin/announcements", {"done": "deleted"}),
            self._refused,
            errbackArgs=(page,),
        )

    def _refused(self, failure: Failure, page: Page, **form: str) -> bytes:
        failure.trap(RecordingError)
        error = failure.value
        assert isinstance(error, RecordingError)
        return self._render(page, 400, error=page.t(error.key).format(**error.values), **form)

    def _uses(self) -> dict[str, list[str]]:
        """Announcement name → the numbers (users, groups) whose forwards name it: read
        from every forward, so it is for the admin's page, never for a call."""
        used: dict[str, set[str]] = {}
        for owner, forwards in self.forwards.all().items():
            for forward in forwards:
                if forward.target.startswith(PREFIX):
                    used.setdefault(forward.target[len(PREFIX) :], set()).add(owner)
        return {name: sorted(owners) for name, owners in used.items()}

    def _render(self, page: Page, status: int, message: str = "", error: str = "", **form: Any) -> bytes:
        return page.render(
            "announcements.html",
            status=status,
            built_in=[name for name in self.announcements.names() if self.announcements.built_in(name)],
            recordings=self.recordings.all(),
            used=self._uses(),
            prefix=PREFIX,
            limit=MAX_SECONDS,
            label=form.get("label", ""),
            message=message,
            error=error,
        )
