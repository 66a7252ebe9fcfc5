"""The admin's own announcements: WAV recordings uploaded on the web page.

A shop's "we are closed until 2 January" is its own words, not a built-in
sentence.  The admin uploads a recording (WAV, 16-bit PCM, mono, 8 or 16 kHz:
what Asterisk plays without transcoding trouble; anything else is refused
with the sox command that converts it), gives it a label, and forwards name it
like a built-in announcement (``announcement:<name>``).

The file goes to the configured directory, which Asterisk reads (the package:
``/var/lib/appliance-announcements``; Asterisk in a chroot sees it under
another path, ``played_from``); its record (label, length, when) to the store
namespace ``recordings``.  The file is written first, atomically, off the
reactor thread, then the record: a recording is listed only once it can be
played.  One in use by a forward is not deleted.
"""

from __future__ import annotations

import io
import os
import re
import unicodedata
import wave
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.logger import Logger

from appliance.announcements import NAMES as BUILT_IN
from appliance.announcements import TARGET
from appliance.store import IKeyValueStore

log = Logger()

NAMESPACE = "recordings"
RATES = {8000: ".wav", 16000: ".wav16"}
"""Sample rates Asterisk plays from WAV, and the extension its format module wants."""
MAX_SECONDS = 300
MAX_LABEL = 60
SLUG_LENGTH = 24
"""Of the label's words in a name: ``rec-`` + 24 + ``-999`` fits `appliance.announcements.TARGET`."""
CONVERT = "sox <file> -r 8000 -c 1 -b 16 -e signed-integer <new file>.wav"

Runner = Callable[..., Deferred[Any]]
"""run(function, *args): call it (in a thread pool), a Deferred of the result."""


class RecordingError(ValueError):
    """An upload that is not stored; ``key`` names the message for the page, ``values`` fill it."""

    def __init__(self, key: str, **values: object) -> None:
        super().__init__(f"{key}: {values}" if values else key)
        self.key = key
        self.values = values


@dataclass(frozen=True)
class Audio:
    """What a checked WAV file holds."""

    rate: int
    seconds: float


def check_audio(data: bytes) -> Audio:
    """The recording's rate and length, or `RecordingError` saying what is wrong with it."""
    if not data:
        raise RecordingError("recording_empty")
    try:
        with wave.open(io.BytesIO(data)) as wav:
            channels, width, rate, frames = (
                wav.getnchannels(),
                wav.getsampwidth(),
                wav.getframerate(),
                wav.getnframes(),
            )
    except (wave.Error, EOFError, ValueError) as error:
        raise RecordingError("recording_not_wav", problem=str(error) or "truncated") from None
    if width != 2 or channels != 1 or rate not in RATES:
        raise RecordingError(
            "recording_format",
            found=f"{rate} Hz, {channels} channel(s), {8 * width} bit",
            command=CONVERT,
        )
    seconds = frames / rate
    if seconds < 0.5:
        raise RecordingError("recording_short")
    if seconds > MAX_SECONDS:
        raise RecordingError("recording_long", seconds=round(seconds), limit=MAX_SECONDS)
    return Audio(rate, seconds)


def check_label(label: str) -> str:
    label = " ".join(label.split())
    if not label:
        raise RecordingError("recording_label_missing")
    if len(label) > MAX_LABEL or any(unicodedata.category(c).startswith("C") for c in label):
        raise RecordingError("recording_label_bad", limit=MAX_LABEL)
    return label


def slug(label: str) -> str:
    """A name for ``announcement:<name>`` from the label: ASCII, lower case, dashes."""
    ascii_text = unicodedata.normalize("NFKD", label.replace("ß", "ss")).encode("ascii", "ignore").decode()
    made = ""
    for word in re.findall(r"[a-z0-9]+", ascii_text.lower()):
        longer = f"{made}-{word}" if made else word
        if len(longer) > SLUG_LENGTH:
            break
        made = longer
    if not made and ascii_text:
        made = "".join(re.findall(r"[a-z0-9]+", ascii_text.lower()))[:SLUG_LENGTH]
    return f"rec-{made}" if made else "rec"


@dataclass(frozen=True)
class Recording:
    name: str
    label: str
    seconds: float
    uploaded: str
    """ISO 8601, UTC."""
    extension: str = ".wav"


def _write(path: Path, data: bytes) -> None:
    """Atomically, readable by Asterisk (the service's umask would hide it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o755)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(partial, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(partial, 0o644)
    os.replace(partial, path)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


class Recordings:
    """The recordings: their records in the store, their files in ``directory``."""

    def __init__(
        self,
        store: IKeyValueStore,
        directory: Path,
        played_from: str = "",
        run: Runner = maybeDeferred,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.directory = directory
        self.played_from = (played_from or str(directory)).rstrip("/")
        self.run = run
        self.now = now

    # -- the catalogue (`appliance.announcements.Recorded`) ---------------------

    def get(self, name: str) -> Recording | None:
        record = self.store.get(NAMESPACE, name)
        if not isinstance(record, dict):
            return None
        try:
            return Recording(
                name,
                str(record["label"]),
                float(record["seconds"]),
                str(record["uploaded"]),
                str(record.get("extension", ".wav")),
            )
        except (KeyError, TypeError, ValueError):
            log.warn("ignoring malformed recording {name}: {record!r}", name=name, record=record)
            return None

    def exists(self, name: str) -> bool:
        return self.get(name) is not None

    def names(self) -> list[str]:
        return [recording.name for recording in self.all()]

    def all(self) -> list[Recording]:
        """Every recording, by label (a short list: the admin's own)."""
        found = (self.get(key) for key, _ in self.store.items(NAMESPACE))
        return sorted((r for r in found if r is not None), key=lambda r: r.label.casefold())

    def label(self, name: str) -> str:
        recording = self.get(name)
        return recording.label if recording is not None else name

    def sound(self, name: str) -> str:
        """What Playback plays: the file by its absolute path as Asterisk sees it."""
        return f"{self.played_from}/{name}"

    # -- changes -----------------------------------------------------------------

    def add(self, label: str, data: bytes) -> Deferred[Recording]:
        """Check and store a new recording; fails with `RecordingError`."""
        try:
            label = check_label(label)
            audio = check_audio(data)
            name = self._free_name(slug(label))
        except RecordingError as error:
            return fail(error)
        extension = RATES[audio.rate]
        path = self.directory / f"{name}{extension}"
        recording = Recording(
            name, label, round(audio.seconds, 1), self.now().isoformat(timespec="seconds"), extension
        )

        def stored(_: object) -> Recording:
            self.store.put(
                NAMESPACE,
                name,
                {
                    "label": recording.label,
                    "seconds": recording.seconds,
                    "uploaded": recording.uploaded,
                    "extension": extension,
                },
            )
            log.info(
                "recording {name} ({label}, {seconds}s) stored",
                name=name,
                label=label,
                seconds=recording.seconds,
            )
            return recording

        def unwritable(failure: Any) -> Any:
            failure.trap(OSError)
            log.error(
                "recording {name} cannot be written to {path}: {error}",
                name=name,
                path=path,
                error=failure.value,
            )
            raise RecordingError("recording_unwritable", directory=str(self.directory))

        return self.run(_write, path, data).addCallbacks(stored, unwritable)

    def remove(self, name: str, used_by: Iterable[str] = ()) -> Deferred[None]:
        """Delete a recording no forward uses (``used_by``: the numbers whose forwards name it)."""
        users = sorted(set(used_by))
        recording = self.get(name)
        if recording is None:
            return fail(RecordingError("recording_unknown"))
        if users:
            return fail(RecordingError("recording_in_use", numbers=", ".join(users)))
        self.store.delete(NAMESPACE, name)
        log.info("recording {name} deleted", name=name)
        return self.run(_remove, self.directory / f"{name}{recording.extension}")

    def _free_name(self, wanted: str) -> str:
        candidates = [wanted, *(f"{wanted}-{n}" for n in range(2, 1000))]
        for candidate in candidates:
            if (
                candidate not in BUILT_IN
                and TARGET.match(f"announcement:{candidate}")
                and not self.exists(candidate)
            ):
                return candidate
        raise RecordingError("recording_too_many")
