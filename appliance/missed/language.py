"""Which language a missed-call mail is written in, and the MC_LANGUAGE choices.

Precedence, so that every setting means something: the user's own language
(when the user or admin chose one) → ``MC_LANGUAGE`` (when set) → the
appliance's language from config.ini.  Only languages with a template
present count (seed 001: "the languages for which files exist"); adding a
``missed_call.<lang>.xsl`` adds a language.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from appliance.settings import MC_LANGUAGE, ParseError, Setting, Text


def mail_language(user: str, setting: str, default: str, available: Sequence[str]) -> str:
    """The first of user → setting → default that has a template; else any template's."""
    for candidate in (user, setting, default):
        if candidate and candidate in available:
            return candidate
    return sorted(available)[0]


@dataclass(frozen=True)
class InstalledLanguage:
    """A setting kind: empty, or one of the languages whose template is present now."""

    languages: Callable[[], Sequence[str]]
    name: str = "choice"

    def parse(self, raw: object) -> str:
        word = raw.strip().lower() if isinstance(raw, str) else None
        if word == "" or word in self.languages():
            return word or ""
        shown = repr(raw)[:60]
        raise ParseError(
            Text(f"{shown} has no mail template", f"{shown} hat keine Mail-Vorlage"),
        )

    def allowed(self) -> Text:
        present = ", ".join(self.languages())
        return Text(
            f"empty (the appliance's language) or one of {present}",
            f"leer (Sprache der Appliance) oder eines von {present}",
        )

    def display(self, value: str) -> str:
        return value

    def choices(self) -> tuple[str, ...]:
        return ("", *self.languages())


def with_mail_languages(
    schema: Mapping[str, Setting[Any]], languages: Callable[[], Sequence[str]]
) -> dict[str, Setting[Any]]:
    """``schema`` with MC_LANGUAGE offering exactly the templates present."""
    setting = schema[MC_LANGUAGE.name]
    return {**schema, setting.name: replace(setting, kind=InstalledLanguage(languages))}
