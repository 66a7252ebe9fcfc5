"""The appliance's own announcements (every feature's, German and English) and
how they are built.

Each feature keeps its texts beside its code (`appliance.callback.prompts`,
`appliance.forwarding.prompts`, `appliance.announcements`), `appliance.sounds` names the sound files,
and this module generates them: espeak-ng speaks the text, sox converts it to what Asterisk
plays without transcoding trouble (8 kHz, mono, 16 bit WAV).  They go to
``<sounds>/appliance/<lang>/<name>.wav`` and are played as
``appliance/<lang>/<name>`` (the language is chosen by the appliance, per
user; Asterisk's own ``<sounds>/<lang>`` may be symlinks into other packages,
so they are left alone).

    python -m appliance.prompts <sounds dir>

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
from collections.abc import Mapping
from pathlib import Path

from appliance import announcements
from appliance.callback import prompts as callback
from appliance.forwarding import prompts as forwarding
from appliance.sounds import VOICES

Texts = Mapping[tuple[str, str], str]
"""(language, file name) → the text spoken."""


def texts() -> dict[tuple[str, str], str]:
    """Every announcement of every feature."""
    out: dict[tuple[str, str], str] = {}
    for feature in (callback.texts(), forwarding.texts(), announcements.texts()):
        clash = set(out) & set(feature)
        if clash:
            raise ValueError(f"announcements defined twice: {sorted(clash)}")
        out.update(feature)
    return out


def build(sounds: Path, wanted: Texts | None = None) -> list[Path]:
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
        for (language, name), text in sorted((texts() if wanted is None else wanted).items()):
            target = sounds / "appliance" / language / f"{name}.wav"
            digest = hashlib.sha256(f"{VOICES[language]}\n{text}".encode()).hexdigest()
            key = f"{language}/{name}"
            if target.exists() and manifest.get(key) == digest:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            raw = Path(tmp) / "raw.wav"
            subprocess.run([espeak, "-v", VOICES[language], "-s", "150", "-w", str(raw), text], check=True)
            converted = Path(tmp) / "converted.wav"
            # -R: sox's repeatable mode (fixed dither seed): two package builds, same bytes.
            convert = [sox, "-R", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer"]
            subprocess.run([*convert, str(converted)], check=True)
            partial = target.with_suffix(f".{os.getpid()}.tmp")
            shutil.copyfile(converted, partial)
            os.replace(partial, target)  # labs configured side by side never see half a file
            manifest[key] = digest
            written.append(target)
    if written:
        manifest_path.parent.mkdir(parents=True, exist_ok=True)
        partial = manifest_path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        os.replace(partial, manifest_path)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m appliance.prompts <sounds dir>")
    for path in build(Path(sys.argv[1])):
        print(path)
