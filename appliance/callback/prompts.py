"""The callback announcements in German and English, and how they are built.

The texts live here; the sound files are generated with espeak-ng and
converted with sox to what Asterisk plays without transcoding trouble
(8 kHz, mono, 16 bit WAV).  They go to ``<sounds>/appliance/<lang>/<name>.wav``
and are played as ``appliance/<lang>/<name>`` (the language is chosen by the
appliance, per user; Asterisk's own ``<sounds>/<lang>`` may be symlinks into
other packages, so they are left alone).

    python -m appliance.callback.prompts <sounds dir>

builds what is missing or changed (a manifest remembers the texts).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

KEYS = "0123456789*#"
KEY_WORDS = {"de": {"*": "Stern", "#": "Raute"}, "en": {"*": "star", "#": "hash"}}
VOICES = {"de": "de", "en": "en-gb"}

TEXTS: dict[str, dict[str, str]] = {
    "cc-offer": {
        "de": "Der gewünschte Teilnehmer ist zur Zeit nicht erreichbar. "
        "Für einen automatischen Rückruf drücken Sie die Taste {key}.",
        "en": "The person you are calling is not available at the moment. "
        "For an automatic callback, press {key}.",
    },
    "cc-confirm": {
        "de": "Ihr Rückruf ist vorgemerkt. Sie werden angerufen, sobald der Teilnehmer frei ist.",
        "en": "Your callback is booked. You will be called as soon as the line is free.",
    },
    "cc-refused": {
        "de": "Der Rückruf konnte nicht vorgemerkt werden.",
        "en": "The callback could not be booked.",
    },
    "cc-cancelled": {
        "de": "Ihre Rückrufwünsche wurden gelöscht.",
        "en": "Your callback requests have been cancelled.",
    },
    "cc-dnd-on": {"de": "Nicht stören ist eingeschaltet.", "en": "Do not disturb is on."},
    "cc-dnd-off": {"de": "Nicht stören ist ausgeschaltet.", "en": "Do not disturb is off."},
}


def key_name(key: str) -> str:
    """File-name part for a DTMF key: ``5``, ``star``, ``hash``."""
    return {"*": "star", "#": "hash"}.get(key, key)


def offer_prompt(language: str, key: str) -> str:
    return prompt(language, f"cc-offer-{key_name(key)}")


def prompt(language: str, name: str) -> str:
    return f"appliance/{language}/{name}"


def texts() -> dict[tuple[str, str], str]:
    """(language, file name) → text, every announcement the appliance plays."""
    out: dict[tuple[str, str], str] = {}
    for language in VOICES:
        for key in KEYS:
            word = KEY_WORDS[language].get(key, key)
            out[(language, f"cc-offer-{key_name(key)}")] = TEXTS["cc-offer"][language].format(key=word)
        for name, by_language in TEXTS.items():
            if name != "cc-offer":
                out[(language, name)] = by_language[language]
    return out


def build(sounds: Path) -> list[Path]:
    """Generate missing or outdated files below ``sounds``; return those written."""
    espeak, sox = shutil.which("espeak-ng"), shutil.which("sox")
    if not espeak or not sox:
        raise RuntimeError("building the prompts needs espeak-ng and sox (apt-get install espeak-ng sox)")
    manifest_path = sounds / "appliance" / "prompts.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        manifest = {}
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for (language, name), text in sorted(texts().items()):
            target = sounds / "appliance" / language / f"{name}.wav"
            digest = hashlib.sha256(f"{VOICES[language]}\n{text}".encode()).hexdigest()
            key = f"{language}/{name}"
            if target.exists() and manifest.get(key) == digest:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            raw = Path(tmp) / "raw.wav"
            subprocess.run([espeak, "-v", VOICES[language], "-s", "150", "-w", str(raw), text], check=True)
            converted = Path(tmp) / "converted.wav"
            subprocess.run(
                [sox, str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(converted)],
                check=True,
            )
            partial = target.with_suffix(f".{os.getpid()}.tmp")
            shutil.copyfile(converted, partial)
            os.replace(partial, target)  # labs configured side by side never see half a file
            manifest[key] = digest
            written.append(target)
    if written:
        partial = manifest_path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        os.replace(partial, manifest_path)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m appliance.callback.prompts <sounds dir>")
    for path in build(Path(sys.argv[1])):
        print(path)
