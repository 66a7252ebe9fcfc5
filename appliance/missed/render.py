"""The missed-call mail's content: an XML document of the facts, turned into HTML
by the language's XSL template (``appliance/missed/xsl/missed_call.<lang>.xsl``), plus a subject
and a plain-text part.

The input document is built with lxml, never by string concatenation, and the
XSLT output escapes every text node, so a caller name like ``<script>`` stays
text.  Templates run without file or network access: the stylesheet is parsed
with ``no_network``, no entity resolution and a resolver that refuses every
URL (``xsl:include``, ``xsl:import``), refused if it declares a DTD, and run
under ``XSLTAccessControl.DENY_ALL`` (``document()``).  Every template is
compiled and test-rendered when the appliance starts and when the web page
saves one (`validate_template`), so a broken template fails there and not at
3 a.m.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from appliance.config import ConfigError
from appliance.shipped import xsl_directory

LANGUAGES = ("de", "en")
DEFAULT_DIRECTORY = xsl_directory()
_DIALABLE = re.compile(r"\+?[0-9*#]{1,32}")


class TemplateError(ConfigError):
    """A template that cannot be used; the message names it and says why."""


class _RefuseAll(etree.Resolver):
    def resolve(self, system_url: str, public_id: str, context: object) -> None:
        raise TemplateError(f"templates may not load other files: {system_url}")


def _parser() -> etree.XMLParser:
    parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False, huge_tree=False)
    parser.resolvers.add(_RefuseAll())
    return parser


@dataclass(frozen=True)
class Notice:
    """Everything a missed-call mail says."""

    caller_num: str
    caller_name: str
    suppressed: bool
    time: float
    user_name: str
    user_extension: str
    ring_seconds: float
    link: str | None = None
    contact_name: str = ""
    contact_organization: str = ""
    contact_email: str = ""
    answered_by: str | None = None


def link_for(number: str, prefix: str) -> str | None:
    """``prefix + number`` for a dialable number; None when links are off (empty
    prefix) or the number is not something one can dial."""
    if not prefix or not _DIALABLE.fullmatch(number or ""):
        return None
    return prefix + number


def _clean(text: str) -> str:
    """XML cannot carry control characters; callers can send them."""
    return "".join(ch for ch in str(text) if ch.isprintable() or ch == " ")


def notice_document(notice: Notice, language: str) -> etree._ElementTree:
    when = datetime.datetime.fromtimestamp(notice.time).astimezone()
    root = etree.Element("missedCall", language=language)
    etree.SubElement(
        root,
        "time",
        iso=when.isoformat(timespec="seconds"),
        date=when.strftime("%d.%m.%Y" if language == "de" else "%Y-%m-%d"),
        clock=when.strftime("%H:%M"),
    )
    caller = etree.SubElement(root, "caller", suppressed="true" if notice.suppressed else "false")
    etree.SubElement(caller, "number").text = "" if notice.suppressed else _clean(notice.caller_num)
    if notice.link and not notice.suppressed:
        etree.SubElement(caller, "link").text = _clean(notice.link)
    etree.SubElement(caller, "name").text = _clean(notice.caller_name)
    if notice.contact_name or notice.contact_organization or notice.contact_email:
        contact = etree.SubElement(caller, "contact")
        etree.SubElement(contact, "name").text = _clean(notice.contact_name)
        etree.SubElement(contact, "organization").text = _clean(notice.contact_organization)
        etree.SubElement(contact, "email").text = _clean(notice.contact_email)
    called = etree.SubElement(root, "called")
    etree.SubElement(called, "name").text = _clean(notice.user_name)
    etree.SubElement(called, "extension").text = _clean(notice.user_extension)
    etree.SubElement(root, "ringSeconds").text = str(round(notice.ring_seconds))
    if notice.answered_by:
        etree.SubElement(root, "answeredBy").text = _clean(notice.answered_by)
    return etree.ElementTree(root)


SAMPLE = Notice(
    caller_num="+4930123456",
    caller_name="Sample <Caller>",
    suppressed=False,
    time=0.0,
    user_name="Sample User",
    user_extension="200",
    ring_seconds=12,
    link="tel:+4930123456",
    contact_name="Sample Contact",
    contact_organization="Sample Ltd",
    contact_email="sample@example.org",
    answered_by="201",
)


def load_template(text: str | bytes, name: str = "template") -> etree.XSLT:
    """Compile a stylesheet safely and test-render it; problems raise `TemplateError`."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        document = etree.fromstring(data, _parser()).getroottree()
    except TemplateError as error:
        raise TemplateError(f"{name}: {error}") from None
    except etree.XMLSyntaxError as error:
        raise TemplateError(f"{name}: not well-formed XML: {error}") from None
    if document.docinfo.doctype or document.docinfo.internalDTD is not None:
        raise TemplateError(f"{name}: templates may not declare a DTD or entities")
    try:
        transform = etree.XSLT(document, access_control=etree.XSLTAccessControl.DENY_ALL)
    except TemplateError as error:
        raise TemplateError(f"{name}: {error}") from None
    except etree.XSLTParseError as error:
        raise TemplateError(f"{name}: not a valid XSL template: {error}") from None
    for language in LANGUAGES:
        try:
            result = transform(notice_document(SAMPLE, language))
        except (etree.XSLTApplyError, TemplateError) as error:
            raise TemplateError(f"{name}: fails on a sample call: {error}") from None
        if result.getroot() is None:
            raise TemplateError(f"{name}: produces no HTML for a sample call")
    return transform


def validate_template(text: str | bytes) -> None:
    """For the web page: raise `TemplateError` if this template text cannot be used."""
    load_template(text)


_SUBJECT = {"de": "Verpasster Anruf von {who}", "en": "Missed call from {who}"}
_UNKNOWN = {"de": "unbekannt", "en": "unknown"}
_WITHHELD = {"de": "unterdrückter Rufnummer", "en": "withheld number"}
_TEXT = {
    "de": (
        "Verpasster Anruf für {user} ({ext})\n\n"
        "Von:        {who}\nRufnummer:  {number}\nWann:       {when}\nGeklingelt: {seconds} Sekunden\n"
    ),
    "en": (
        "Missed call for {user} ({ext})\n\n"
        "From:   {who}\nNumber: {number}\nWhen:   {when}\nRang:   {seconds} seconds\n"
    ),
}
_ANSWERED = {"de": "Angenommen von: {by}\n", "en": "Answered by: {by}\n"}


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


class Renderer:
    """Every installed language's template, compiled and checked at start."""

    def __init__(self, directory: Path = DEFAULT_DIRECTORY, languages: tuple[str, ...] = LANGUAGES) -> None:
        self.directory = directory
        self.templates: dict[str, etree.XSLT] = {}
        for language in languages:
            path = directory / f"missed_call.{language}.xsl"
            try:
                text = path.read_bytes()
            except OSError as error:
                raise TemplateError(f"{path}: cannot read: {error.strerror}") from None
            self.templates[language] = load_template(text, str(path))

    def render(self, notice: Notice, language: str) -> Rendered:
        if language not in self.templates:
            language = next(iter(self.templates))
        who = (
            notice.contact_name
            or notice.caller_name
            or (_WITHHELD[language] if notice.suppressed else notice.caller_num)
            or _UNKNOWN[language]
        )
        who = _clean(who)
        html = str(self.templates[language](notice_document(notice, language)))
        when = datetime.datetime.fromtimestamp(notice.time).astimezone()
        text = _TEXT[language].format(
            user=_clean(notice.user_name),
            ext=notice.user_extension,
            who=who,
            number=("-" if notice.suppressed else _clean(notice.caller_num)) or "-",
            when=when.strftime("%d.%m.%Y %H:%M" if language == "de" else "%Y-%m-%d %H:%M"),
            seconds=round(notice.ring_seconds),
        )
        if notice.answered_by:
            text += _ANSWERED[language].format(by=_clean(notice.answered_by))
        return Rendered(_SUBJECT[language].format(who=who), text, html)
