"""The admin's own announcements (`appliance.recordings`): what a WAV upload must
be, how it is stored (file first, then the record), the catalogue that names it,
and the admin page that uploads, lists and deletes them."""

from __future__ import annotations

import io
import math
import shutil
import stat
import struct
import tempfile
import wave
from datetime import UTC, datetime
from pathlib import Path

import pytest
from twisted.trial.unittest import SynchronousTestCase

from appliance.announcements import Announcements
from appliance.forwarding.records import Forward, ForwardError, Forwards
from appliance.recordings import NAMESPACE, RecordingError, Recordings, check_audio, slug
from appliance.testing import MemoryStore
from appliance.web.pages.announcements import AnnouncementPages
from appliance.web.pages.forwards import ForwardPages
from tests.unit.test_web import Lab, make_lab
from tests.unit.test_web_features import upload


def tone(seconds: float, rate: int = 8000, channels: int = 1, width: int = 2) -> bytes:
    """A 440 Hz tone as a WAV file."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        frames = int(seconds * rate)
        if width == 2:
            samples = (int(8000 * math.sin(2 * math.pi * 440 * n / rate)) for n in range(frames))
            wav.writeframes(b"".join(struct.pack("<h", s) * channels for s in samples))
        else:
            wav.writeframes(bytes([128]) * frames * channels)
    return buffer.getvalue()


def failure_of(test: SynchronousTestCase, deferred: object) -> RecordingError:
    error = test.failureResultOf(deferred, RecordingError).value  # type: ignore[arg-type]
    assert isinstance(error, RecordingError)
    return error


class AudioTests(SynchronousTestCase):
    def test_what_asterisk_plays_is_accepted(self) -> None:
        self.assertEqual(check_audio(tone(2)).rate, 8000)
        self.assertAlmostEqual(check_audio(tone(2)).seconds, 2.0)
        self.assertEqual(check_audio(tone(1, rate=16000)).rate, 16000)

    def test_anything_else_is_refused_saying_why(self) -> None:
        for data, key in (
            (b"", "recording_empty"),
            (b"RIFF\x00\x00not a wave at all", "recording_not_wav"),
            (b"ID3\x03mp3 data" * 10, "recording_not_wav"),
            (tone(1, channels=2), "recording_format"),
            (tone(1, rate=44100), "recording_format"),
            (tone(1, width=1), "recording_format"),
            (tone(0.2), "recording_short"),
            (tone(301), "recording_long"),
        ):
            with self.assertRaises(RecordingError) as caught:
                check_audio(data)
            self.assertEqual(caught.exception.key, key)
        with self.assertRaises(RecordingError) as caught:
            check_audio(tone(1, rate=44100, channels=2))
        self.assertEqual(caught.exception.values["found"], "44100 Hz, 2 channel(s), 16 bit")
        self.assertIn("sox", str(caught.exception.values["command"]))

    def test_names_come_from_the_label(self) -> None:
        self.assertEqual(slug("Betriebsferien Weihnachten"), "rec-betriebsferien")
        self.assertEqual(slug("Ferien Weihnachten"), "rec-ferien-weihnachten")
        self.assertEqual(slug("Donaudampfschifffahrtsgesellschaft"), "rec-donaudampfschifffahrtsge")
        self.assertEqual(slug("Grüße & Öffnungszeiten!"), "rec-grusse-offnungszeiten")
        self.assertEqual(slug("Große Pause"), "rec-grosse-pause")
        self.assertEqual(slug("☎☎"), "rec")


class RecordingsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = MemoryStore()
        scratch = Path(tempfile.mkdtemp(prefix="appliance-recordings-"))
        self.addCleanup(shutil.rmtree, scratch, True)
        self.directory = scratch / "recordings"
        when = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
        self.recordings = Recordings(self.store, self.directory, "/chroot/sees/it", now=lambda: when)

    def test_upload_writes_a_readable_file_then_lists_it(self) -> None:
        made = self.successResultOf(self.recordings.add("  Ferien  Weihnachten ", tone(3)))
        self.assertEqual(
            (made.name, made.label, made.seconds),
            ("rec-ferien-weihnachten", "Ferien Weihnachten", 3.0),
        )
        path = self.directory / "rec-ferien-weihnachten.wav"
        self.assertEqual(path.read_bytes(), tone(3))
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o644)
        self.assertEqual(stat.S_IMODE(self.directory.stat().st_mode), 0o755)
        self.assertEqual(self.recordings.names(), ["rec-ferien-weihnachten"])
        self.assertEqual(self.recordings.sound(made.name), "/chroot/sees/it/rec-ferien-weihnachten")
        self.assertEqual(self.store.get(NAMESPACE, made.name)["uploaded"], "2026-12-02T08:00:00+00:00")  # type: ignore[index]
        again = self.successResultOf(self.recordings.add("Ferien Weihnachten", tone(1, rate=16000)))
        self.assertEqual(again.name, "rec-ferien-weihnachten-2")
        self.assertTrue((self.directory / "rec-ferien-weihnachten-2.wav16").exists())
        self.assertEqual([path.name for path in self.directory.iterdir() if path.name.startswith(".")], [])

    def test_bad_upload_stores_nothing(self) -> None:
        self.assertEqual(failure_of(self, self.recordings.add("", tone(1))).key, "recording_label_missing")
        self.assertEqual(failure_of(self, self.recordings.add("a\x07b", tone(1))).key, "recording_label_bad")
        self.assertEqual(
            failure_of(self, self.recordings.add("Ok", tone(1, channels=2))).key, "recording_format"
        )
        self.assertEqual(self.store.items(NAMESPACE), [])
        self.assertFalse(self.directory.exists())

    def test_unwritable_directory_is_refused_and_nothing_listed(self) -> None:
        self.directory.write_text("a file where the directory should be")
        error = failure_of(self, self.recordings.add("Urlaub", tone(1)))
        self.assertEqual(
            (error.key, error.values), ("recording_unwritable", {"directory": str(self.directory)})
        )
        self.assertEqual(self.recordings.names(), [])
        self.flushLoggedErrors()

    def test_one_in_use_is_not_deleted(self) -> None:
        made = self.successResultOf(self.recordings.add("Urlaub", tone(1)))
        error = failure_of(self, self.recordings.remove(made.name, ["600", "200"]))
        self.assertEqual((error.key, error.values), ("recording_in_use", {"numbers": "200, 600"}))
        self.assertTrue(self.recordings.exists(made.name))
        self.successResultOf(self.recordings.remove(made.name))
        self.assertFalse(self.recordings.exists(made.name))
        self.assertFalse((self.directory / f"{made.name}.wav").exists())
        self.assertEqual(failure_of(self, self.recordings.remove(made.name)).key, "recording_unknown")

    def test_catalogue_and_forwards_know_recordings(self) -> None:
        """A forward may name a recording once it exists; one deleted behind a forward's
        back (an old version) plays the built-in fallback."""
        catalogue = Announcements("de", self.recordings)
        forwards = Forwards(self.store, catalogue.known)
        self.assertRaises(
            ForwardError, forwards.set, "600", Forward("unconditional", "announcement:rec-urlaub")
        )
        made = self.successResultOf(self.recordings.add("Urlaub", tone(1)))
        forwards.set("600", Forward("unconditional", "announcement:rec-urlaub"))
        self.assertEqual([f.target for f in forwards.of("600")], ["announcement:rec-urlaub"])
        self.assertEqual(catalogue.names(), ["closed", "holiday", "unavailable", "rec-urlaub"])
        self.assertEqual((catalogue.label(made.name), catalogue.label("closed")), ("Urlaub", ""))
        self.assertEqual(catalogue.sound(made.name), "/chroot/sees/it/rec-urlaub")
        self.assertEqual(catalogue.sound("closed"), "appliance/de/announce-closed")
        self.store.delete(NAMESPACE, made.name)
        self.assertEqual(catalogue.sound(made.name), "appliance/de/announce-unavailable")
        self.assertEqual(forwards.of("600"), [])
        self.flushLoggedErrors()


@pytest.fixture
def page_lab(tmp_path: Path) -> tuple[Lab, Recordings, Forwards]:
    lab = make_lab()
    recordings = Recordings(lab.store, tmp_path / "recordings")
    catalogue = Announcements("en", recordings)
    forwards = Forwards(lab.store, catalogue.known)
    lab.web.announcements = catalogue
    lab.web.add(AnnouncementPages(recordings, catalogue, forwards))
    lab.web.add(ForwardPages(forwards, lab.directory))
    return lab, recordings, forwards


def test_admin_uploads_uses_and_deletes_a_recording(page_lab: tuple[Lab, Recordings, Forwards]) -> None:
    """Upload on the page; the forward form offers it by label; deleting it is refused
    while Ben's forward plays it, then allowed."""
    lab, recordings, forwards = page_lab
    admin = lab.browser(**{"Accept-Language": "en"})
    assert admin.login("admin", "admin-secret").code == 303
    csrf = admin.csrf("/admin/announcements")
    refused = upload(
        admin, "/admin/announcements", {"csrf": csrf, "label": "Urlaub"}, "x.wav", tone(1, channels=2)
    )
    assert refused.code == 400
    assert "WAV file: 8000 Hz, 2 channel(s), 16 bit; needed is 16-bit PCM, mono" in refused.text
    assert 'value="Urlaub"' in refused.text
    reply = upload(admin, "/admin/announcements", {"csrf": csrf, "label": "Urlaub <b>"}, "x.wav", tone(2))
    assert (reply.code, reply.header("location")) == (303, "/admin/announcements?done=saved")
    listed = admin.get(reply.header("location")).text
    assert "Announcement uploaded." in listed
    assert "Urlaub &lt;b&gt;" in listed and "<code>announcement:rec-urlaub-b</code>" in listed
    assert "<code>announcement:closed</code>" in listed

    form = admin.get("/admin/forwards/200").text
    assert '<option value="rec-urlaub-b">Urlaub &lt;b&gt;</option>' in form
    fields = {"kind": "unconditional", "scope": "all", "target": "", "announcement": "rec-urlaub-b"}
    saved = admin.post("/admin/forwards/200", {"csrf": admin.csrf("/admin/forwards/200"), **fields})
    assert saved.code == 303, saved.text
    assert forwards.of("200") == [Forward("unconditional", "announcement:rec-urlaub-b")]
    assert "Announcement: Urlaub &lt;b&gt;" in admin.get("/admin/forwards/200").text

    delete = "/admin/announcements/rec-urlaub-b/delete"
    refused = admin.post(delete, {"csrf": admin.csrf("/admin/announcements")})
    assert refused.code == 400 and "Still used by the forwards of 200" in refused.text
    forwards.clear("200")
    gone = admin.post(delete, {"csrf": admin.csrf("/admin/announcements")})
    assert (gone.code, gone.header("location")) == (303, "/admin/announcements?done=deleted")
    assert recordings.names() == []


def test_users_cannot_reach_the_announcements_page(page_lab: tuple[Lab, Recordings, Forwards]) -> None:
    lab, recordings, _ = page_lab
    anna = lab.browser()
    assert anna.login("100", "anna-secret").code == 303
    assert anna.get("/admin/announcements").code == 403
    reply = upload(
        anna, "/admin/announcements", {"csrf": anna.csrf("/me/forwards"), "label": "x"}, "x.wav", tone(1)
    )
    assert reply.code == 403
    assert recordings.names() == []
