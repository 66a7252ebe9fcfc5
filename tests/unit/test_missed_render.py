"""The missed-call mail content: XSL templates per language, escaping, sandboxing."""

from __future__ import annotations

import datetime
from dataclasses import replace
from pathlib import Path

import lxml.html
import pytest

from appliance.missed.render import (
    DEFAULT_DIRECTORY,
    SAMPLE,
    Notice,
    Renderer,
    TemplateError,
    link_for,
    load_template,
    validate_template,
)

WHEN = datetime.datetime(2026, 11, 23, 14, 5).timestamp()
NOTICE = replace(SAMPLE, time=WHEN, answered_by=None)
HEAD = '<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


@pytest.mark.parametrize(
    ("language", "words", "date"),
    [
        ("de", ["Verpasster Anruf", "Rufnummer", "Sekunden"], "23.11.2026"),
        ("en", ["Missed call", "Number"], "2026-11-23"),
    ],
)
def test_html_per_language(renderer: Renderer, language: str, words: list[str], date: str) -> None:
    """Each language's template names the caller, links the number and uses its own words."""
    rendered = renderer.render(NOTICE, language)
    page = lxml.html.fromstring(rendered.html)
    text = page.text_content()
    for word in words:
        assert word in text
    assert date in text and "14:05" in text
    assert "Sample Contact" in text and "Sample Ltd" in text
    [link] = page.xpath("//a")
    assert (link.get("href"), link.text) == ("tel:+4930123456", "+4930123456")
    assert rendered.subject == (
        "Verpasster Anruf von Sample Contact" if language == "de" else "Missed call from Sample Contact"
    )
    assert "+4930123456" in rendered.text and date in rendered.text


def test_caller_name_is_escaped(renderer: Renderer) -> None:
    """A caller name with markup stays text in the HTML: no element is injected."""
    notice = replace(NOTICE, contact_name="", caller_name='<script>alert(1)</script><a href="x">')
    html = renderer.render(notice, "en").html
    assert "<script>" not in html
    page = lxml.html.fromstring(html)
    assert not page.xpath("//script")
    assert len(page.xpath("//a")) == 1
    assert "<script>alert(1)</script>" in page.text_content()


def test_control_characters_do_not_break_rendering(renderer: Renderer) -> None:
    """Control characters a caller can send are dropped, not an XML error."""
    notice = replace(NOTICE, contact_name="", caller_name="Evil\x00\x07Name\r\nBcc: x")
    rendered = renderer.render(notice, "en")
    assert "EvilName" in rendered.html and "\x00" not in rendered.text


@pytest.mark.parametrize(
    ("prefix", "number", "expected"),
    [
        ("tel:", "+4930123456", "tel:+4930123456"),
        ("callto:", "0301234", "callto:0301234"),
        ("phone:", "200", "phone:200"),
        ("sip123:", "200", "sip123:200"),
        ("", "+4930123456", None),
        ("tel:", "javascript:alert(1)", None),
        ("tel:", "", None),
    ],
)
def test_link_prefix(prefix: str, number: str, expected: str | None) -> None:
    """Links use MC_LINK_PREFIX; empty prefix or a non-number gives no link."""
    assert link_for(number, prefix) == expected


def test_no_link_when_prefix_off(renderer: Renderer) -> None:
    """With links off the number is plain text."""
    page = lxml.html.fromstring(renderer.render(replace(NOTICE, link=None), "de").html)
    assert not page.xpath("//a") and "+4930123456" in page.text_content()


def test_suppressed_number_shows_withheld(renderer: Renderer) -> None:
    """A suppressed caller has neither number nor link in the mail."""
    notice = replace(NOTICE, suppressed=True, caller_num="anonymous", caller_name="", contact_name="")
    rendered = renderer.render(notice, "de")
    assert "unterdrückt" in rendered.html and "anonymous" not in rendered.html
    assert rendered.subject == "Verpasster Anruf von unterdrückter Rufnummer"


def test_include_of_a_local_file_is_refused(tmp_path: Path) -> None:
    """xsl:include of a local file fails at load, naming the file."""
    other = tmp_path / "other.xsl"
    other.write_text(HEAD + '<xsl:template name="x"><b>included</b></xsl:template></xsl:stylesheet>')
    text = (
        HEAD + f'<xsl:include href="{other}"/><xsl:template match="/"><html/></xsl:template></xsl:stylesheet>'
    )
    with pytest.raises(TemplateError, match="may not load other files"):
        load_template(text)


def test_import_of_a_local_file_is_refused(tmp_path: Path) -> None:
    """xsl:import is refused the same way."""
    text = (
        HEAD
        + '<xsl:import href="/etc/passwd"/><xsl:template match="/"><html/></xsl:template></xsl:stylesheet>'
    )
    with pytest.raises(TemplateError, match="may not load other files"):
        load_template(text)


def test_document_function_is_refused() -> None:
    """document('/etc/passwd') fails when the template is checked, not later."""
    text = HEAD + '<xsl:template match="/"><html><xsl:value-of select="document(\'/etc/passwd\')"/></html>'
    text += "</xsl:template></xsl:stylesheet>"
    with pytest.raises(TemplateError, match="fails on a sample call"):
        validate_template(text)


def test_external_entity_is_refused(tmp_path: Path) -> None:
    """A template with a DTD (external entity) is refused."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    text = f'<!DOCTYPE x [<!ENTITY e SYSTEM "file://{secret}">]>' + HEAD
    text += '<xsl:template match="/"><html>&e;</html></xsl:template></xsl:stylesheet>'
    with pytest.raises(TemplateError, match="DTD"):
        load_template(text)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<xsl:stylesheet", "not well-formed"),
        ("<root/>", "not a valid XSL template"),
        (
            HEAD + '<xsl:template match="/"><xsl:value-of select="1 div"/></xsl:template></xsl:stylesheet>',
            "XSL",
        ),
        (HEAD + "</xsl:stylesheet>", "no HTML"),
    ],
)
def test_broken_templates_are_refused_with_a_reason(text: str, problem: str) -> None:
    """validate_template names what is wrong."""
    with pytest.raises(TemplateError, match=problem):
        validate_template(text)


def test_broken_template_refused_at_start(tmp_path: Path) -> None:
    """A Renderer over a directory with a broken template fails when built, naming the file."""
    for language in ("de", "en"):
        (tmp_path / f"missed_call.{language}.xsl").write_bytes(
            (DEFAULT_DIRECTORY / f"missed_call.{language}.xsl").read_bytes()
        )
    (tmp_path / "missed_call.en.xsl").write_text("<xsl:stylesheet")
    with pytest.raises(TemplateError, match=r"missed_call\.en\.xsl: not well-formed"):
        Renderer(tmp_path)


def test_shipped_templates_validate() -> None:
    """The templates in xsl/ pass the check the web page runs on save."""
    for language in ("de", "en"):
        validate_template((DEFAULT_DIRECTORY / f"missed_call.{language}.xsl").read_bytes())


def test_notice_defaults_render(renderer: Renderer) -> None:
    """A caller with nothing but a number is named by the number."""
    notice = Notice("+4940111", "", False, WHEN, "Max", "200", 3.0)
    assert renderer.render(notice, "en").subject == "Missed call from +4940111"
