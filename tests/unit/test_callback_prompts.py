"""The announcements of callback and forwarding: names, texts, and the generator."""

from __future__ import annotations

import json
import shutil
import wave
from pathlib import Path

import pytest

from appliance import prompts
from appliance.callback import prompts as callback
from appliance.forwarding import prompts as forwarding


def test_forwarding_sentences_per_language() -> None:
    """A forwarding confirmation is one sentence per language; other languages hear English."""
    assert forwarding.prompts("de", "busy", "activated") == "appliance/de/fwd-busy-on"
    assert forwarding.prompts("en", "all", "deactivated") == "appliance/en/fwd-all-off"
    assert forwarding.prompts("fr", "invalid") == "appliance/en/fwd-invalid"


def test_every_sentence_has_a_text_in_every_language() -> None:
    """Every file a feature plays is generated, in German and in English."""
    wanted = prompts.texts()
    played = set(forwarding.SENTENCES.values()) | {"cc-confirm", "cc-refused", "cc-cancelled"}
    played |= {f"cc-offer-{callback.key_name(key)}" for key in callback.KEYS}
    for language in ("de", "en"):
        for name in played:
            assert wanted[(language, name)], (language, name)
    assert wanted[("de", "fwd-invalid")] == "Ungültige Eingabe."
    assert wanted[("de", "fwd-unconditional-on")].startswith("Sofortige Rufumleitung")


@pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")), reason="needs espeak-ng and sox")
def test_build_writes_asterisk_wavs_once(tmp_path: Path) -> None:
    """The generator writes 8 kHz mono 16-bit WAVs where Asterisk looks, records
    them in the manifest, and a second run with unchanged texts writes nothing."""
    wanted = {("de", "fwd-invalid"): "Ungültige Eingabe.", ("en", "fwd-invalid"): "Invalid entry."}
    written = prompts.build(tmp_path, wanted)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == [
        "appliance/de/fwd-invalid.wav",
        "appliance/en/fwd-invalid.wav",
    ]
    with wave.open(str(tmp_path / "appliance/de/fwd-invalid.wav")) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
        assert wav.getnframes() > 4000  # at least half a second of speech
    assert set(json.loads((tmp_path / "appliance/prompts.json").read_text())) == {
        "de/fwd-invalid",
        "en/fwd-invalid",
    }
    assert prompts.build(tmp_path, wanted) == []
