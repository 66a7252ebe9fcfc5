"""Missed-call templates: shipped and customised directories, the languages present,
checked uploads that keep the last good template, and the language precedence."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import lxml.html
import pytest

from appliance.missed.language import InstalledLanguage, mail_language, with_mail_languages
from appliance.missed.render import DEFAULT_DIRECTORY, SAMPLE, Renderer, TemplateError, load_template
from appliance.settings import SCHEMA, InvalidSetting, ParseError, Settings
from appliance.testing import MemoryStore

HEAD = '<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'


def template(words: str, title: str = "") -> bytes:
    head = f"<head><title>{title}</title></head>" if title else ""
    return (
        f'{HEAD}<xsl:template match="/missedCall"><html>{head}<body><p>{words} '
        '<xsl:value-of select="caller/name"/></p></body></html></xsl:template></xsl:stylesheet>'
    ).encode()


NOTICE = replace(SAMPLE, contact_name="", caller_name="Erika")


@pytest.fixture
def custom(tmp_path: Path) -> Path:
    return tmp_path / "custom"


def test_languages_are_the_templates_present(custom: Path) -> None:
    """Without customised templates the shipped de and en are offered."""
    assert Renderer(custom=custom).languages == ("de", "en")


def test_customised_template_overrides_the_shipped_one(custom: Path) -> None:
    """A file in the customised directory serves its language instead of the shipped one."""
    custom.mkdir()
    (custom / "missed_call.de.xsl").write_bytes(template("Eigene Vorlage"))
    renderer = Renderer(custom=custom)
    assert renderer.is_custom("de") and not renderer.is_custom("en")
    assert "Eigene Vorlage Erika" in renderer.render(NOTICE, "de").html
    assert "Eigene Vorlage" not in renderer.render(NOTICE, "en").html


def test_adding_a_file_adds_a_language(custom: Path) -> None:
    """missed_call.fr.xsl makes French a language; subject and text come from its HTML."""
    custom.mkdir()
    (custom / "missed_call.fr.xsl").write_bytes(template("Appel manqué de", title="Appel manqué"))
    renderer = Renderer(custom=custom)
    assert renderer.languages == ("de", "en", "fr")
    rendered = renderer.render(NOTICE, "fr")
    assert rendered.subject == "Appel manqué: Erika"
    assert rendered.text == "Appel manqué de Erika\n"


def test_install_writes_the_file_and_serves_it(custom: Path) -> None:
    """A good upload lands in the customised directory and the next render uses it."""
    renderer = Renderer(custom=custom)
    renderer.install("en", template("Uploaded"))
    assert (custom / "missed_call.en.xsl").read_bytes() == template("Uploaded")
    assert "Uploaded Erika" in renderer.render(NOTICE, "en").html
    assert Renderer(custom=custom).source("en") == template("Uploaded")  # after a restart, too


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        (HEAD + "\n<xsl:template match='/'>\n<html>\n</xsl:template></xsl:stylesheet>", 4, "not well-formed"),
        (HEAD + "\n\n<xsl:bogus/></xsl:stylesheet>", 3, "not a valid XSL template"),
        (
            HEAD + '\n<xsl:template match="/"><html><xsl:value-of select="1 div"/></html></xsl:template>'
            "</xsl:stylesheet>",
            2,
            "not a valid XSL template",
        ),
    ],
    ids=["unclosed", "unknown-element", "bad-xpath"],
)
def test_refused_upload_names_line_and_reason_and_keeps_the_old(
    custom: Path, text: str, line: int, reason: str
) -> None:
    """A broken upload raises with its line and reason; nothing is written, the old one serves."""
    renderer = Renderer(custom=custom)
    before = renderer.render(NOTICE, "en").html
    with pytest.raises(TemplateError) as refused:
        renderer.install("en", text.encode())
    assert refused.value.line == line and reason in refused.value.reason
    assert not (custom / "missed_call.en.xsl").exists()
    assert renderer.render(NOTICE, "en").html == before


def test_refused_upload_of_a_dtd_or_include(custom: Path, tmp_path: Path) -> None:
    """The upload goes through the same safe parser: entities and includes are refused."""
    renderer = Renderer(custom=custom)
    entity = f'<!DOCTYPE x [<!ENTITY e SYSTEM "file://{tmp_path}/x">]>' + HEAD + "</xsl:stylesheet>"
    with pytest.raises(TemplateError, match="DTD"):
        renderer.install("en", entity.encode())
    include = HEAD + '<xsl:include href="/etc/passwd"/></xsl:stylesheet>'
    with pytest.raises(TemplateError, match="may not load other files"):
        renderer.install("en", include.encode())
    assert renderer.languages == ("de", "en") and not custom.exists()


def test_bad_language_code_is_refused(custom: Path) -> None:
    """Only 2 or 3 letters make a file name; nothing else reaches the file system."""
    with pytest.raises(TemplateError, match="not a language code"):
        Renderer(custom=custom).install("../x", template("x"))


def test_remove_goes_back_to_the_shipped_template(custom: Path) -> None:
    """Removing a customised template serves the shipped one again; a custom-only
    language disappears."""
    renderer = Renderer(custom=custom)
    renderer.install("en", template("Uploaded"))
    renderer.install("fr", template("Bonjour"))
    renderer.remove("en")
    renderer.remove("fr")
    assert renderer.languages == ("de", "en")
    assert renderer.source("en") == (DEFAULT_DIRECTORY / "missed_call.en.xsl").read_bytes()
    assert "Uploaded" not in renderer.render(NOTICE, "en").html


def test_preview_renders_the_sample_call(custom: Path) -> None:
    """The preview is the sample call through the given (or installed) template."""
    renderer = Renderer(custom=custom)
    page = lxml.html.fromstring(renderer.preview(template("Preview of"), "en"))
    assert "Preview of Erika" not in page.text_content()
    assert "Preview of Sample <Caller>" in page.text_content()
    assert "Sample Contact" in renderer.preview(None, "de")
    with pytest.raises(TemplateError):
        renderer.preview(b"<xsl:stylesheet", "en")


def test_start_fails_on_a_broken_customised_template(custom: Path) -> None:
    """A broken file put there by hand stops start-up, naming the file."""
    custom.mkdir()
    (custom / "missed_call.de.xsl").write_text("<xsl:stylesheet")
    with pytest.raises(TemplateError, match=r"custom/missed_call\.de\.xsl: not well-formed"):
        Renderer(custom=custom)


def test_load_template_line_of_syntax_error() -> None:
    """The line of an XML syntax error is the line in the file."""
    with pytest.raises(TemplateError) as refused:
        load_template("<a>\n<b>\n</a>")
    assert refused.value.line == 3


@pytest.mark.parametrize(
    ("user", "setting", "default", "expected"),
    [
        ("en", "de", "de", "en"),  # the user's own language first
        ("", "en", "de", "en"),  # then MC_LANGUAGE
        ("", "", "en", "en"),  # then the appliance's language
        ("", "fr", "de", "fr"),  # a language added by a template
        ("xx", "yy", "en", "en"),  # languages without a template are skipped
        ("", "", "xx", "de"),  # nothing usable: any template
    ],
)
def test_mail_language_precedence(user: str, setting: str, default: str, expected: str) -> None:
    """user → MC_LANGUAGE → appliance default, among the templates present."""
    assert mail_language(user, setting, default, ("de", "en", "fr")) == expected


def test_mc_language_offers_the_templates_present(custom: Path) -> None:
    """The setting accepts empty or a present language; a new template adds a choice."""
    renderer = Renderer(custom=custom)
    settings = Settings(MemoryStore(), with_mail_languages(SCHEMA, lambda: renderer.languages))
    [row] = settings.describe("en", matching="MC_LANGUAGE")
    assert row.choices == ("", "de", "en")
    with pytest.raises(InvalidSetting, match="'fr' has no mail template"):
        settings.set("MC_LANGUAGE", "fr")
    renderer.install("fr", template("Bonjour"))
    settings.set("MC_LANGUAGE", "FR")
    assert settings.get("MC_LANGUAGE") == "fr"
    [row] = settings.describe("en", matching="MC_LANGUAGE")
    assert row.choices == ("", "de", "en", "fr")
    renderer.remove("fr")
    assert settings.get("MC_LANGUAGE") == ""  # a removed language falls back to the default


def test_installed_language_kind() -> None:
    """Parsing is case-insensitive and empty means "the appliance's language"."""
    kind = InstalledLanguage(lambda: ("de", "en"))
    assert (kind.parse(" EN "), kind.parse("")) == ("en", "")
    with pytest.raises(ParseError):
        kind.parse(3)
