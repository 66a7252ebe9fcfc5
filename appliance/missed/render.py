"""The missed-call mail's content: an XML document of the facts, turned into HTML
by the language's XSL template (``missed_call.<lang>.xsl``), plus a subject
and a plain-text part.

Templates come from two directories: the shipped ones (`appliance.shipped`, replaced by
every upgrade) and the admin's customised ones (``[missed] templates`` in
config.ini, ``/etc/appliance/xsl`` in the package), which override a shipped
template of the same language.  The languages offered are the templates
present in either, so adding a file adds a language.

The input document is built with lxml, never by string concatenation, and the
XSLT output escapes every text node, so a caller name like ``<script>`` stays
text.  Templates run without file or network access: the stylesheet is parsed
with ``no_network``, no entity resolution and a resolver that refuses every
URL (``xsl:include``, ``xsl:import``), refused if it declares a DTD, and run
under ``XSLTAccessControl.DENY_ALL`` (``document()``).  Every template is
compiled and test-rendered when the appliance starts and when the web page
saves one (`Renderer.install`), so a broken template fails there and not at
3 a.m.; a refused upload leaves the last good template serving.
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from appliance.config import ConfigError
from appliance.shipped import xsl_directory

LANGUAGES = ("de", "en")
"""The languages whose sample call is rendered when a template is checked."""
DEFAULT_DIRECTORY = xsl_directory()
LANGUAGE_CODE = re.compile(r"[a-z]{2,3}")
_FILE_NAME = re.compile(r"missed_call\.([a-z]{2,3})\.xsl")
_DIALABLE = re.compile(r"\+?[0-9*#]{1,32}")


class TemplateError(ConfigError):
    """A template that cannot be used; the message names it and says why."""

    def __init__(self, message: str, line: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.line = line
        """Line of the template the problem is on, when the parser knows it."""
        self.reason = reason or message


def template_file(language: str) -> str:
    return f"missed_call.{language}.xsl"


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


def _first_error(error_log: object) -> tuple[int | None, str]:
    """The first line libxslt names, and every message it gave (in order, once each)."""
    entries = list(error_log or ())  # type: ignore[call-overload]
    line = next((entry.line for entry in entries if entry.line), None)
    messages = dict.fromkeys(str(entry.message).strip() for entry in entries)
    return line, "; ".join(message for message in messages if message)


def load_template(text: str | bytes, name: str = "template") -> etree.XSLT:
    """Compile a stylesheet safely and test-render it; problems raise `TemplateError`
    with the line (where the parser knows it) and the reason."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        document = etree.fromstring(data, _parser()).getroottree()
    except TemplateError as error:
        raise TemplateError(f"{name}: {error}", reason=str(error)) from None
    except etree.XMLSyntaxError as error:
        line = error.lineno or None
        reason = f"not well-formed XML: {error.msg}"
        raise TemplateError(f"{name}: {reason}" + (f" (line {line})" if line else ""), line, reason) from None
    if document.docinfo.doctype or document.docinfo.internalDTD is not None:
        reason = "templates may not declare a DTD or entities"
        raise TemplateError(f"{name}: {reason}", 1, reason)
    try:
        transform = etree.XSLT(document, access_control=etree.XSLTAccessControl.DENY_ALL)
    except TemplateError as error:
        raise TemplateError(f"{name}: {error}", reason=str(error)) from None
    except etree.XSLTParseError as error:
        line, detail = _first_error(error.error_log)
        reason = f"not a valid XSL template: {detail or error}"
        raise TemplateError(f"{name}: {reason}" + (f" (line {line})" if line else ""), line, reason) from None
    for language in LANGUAGES:
        try:
            result = transform(notice_document(SAMPLE, language))
        except (etree.XSLTApplyError, TemplateError) as error:
            line, detail = _first_error(getattr(error, "error_log", None) or transform.error_log)
            reason = f"fails on a sample call: {detail or error}"
            raise TemplateError(f"{name}: {reason}", line, reason) from None
        if result.getroot() is None:
            reason = "produces no HTML for a sample call"
            raise TemplateError(f"{name}: {reason}", None, reason)
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
    """Every installed language's template, compiled and checked at start.

    ``shipped`` holds the templates of the package, ``custom`` the admin's
    (may be missing until the first upload); a file in ``custom`` overrides
    the shipped one of its language.  `install` checks a new template, writes
    it to ``custom`` and only then serves it.
    """

    def __init__(self, shipped: Path = DEFAULT_DIRECTORY, custom: Path | None = None) -> None:
        self.shipped = shipped
        self.custom = custom
        self.templates: dict[str, etree.XSLT] = {}
        for language in self._present():
            path = self.path(language)
            try:
                text = path.read_bytes()
            except OSError as error:
                raise TemplateError(f"{path}: cannot read: {error.strerror}") from None
            self.templates[language] = load_template(text, str(path))
        if not self.templates:
            raise TemplateError(f"{shipped}: no missed-call template (missed_call.<language>.xsl)")

    def _present(self) -> list[str]:
        found: set[str] = set()
        for directory in (self.shipped, self.custom):
            if directory is None:
                continue
            try:
                names = os.listdir(directory)
            except FileNotFoundError:
                continue
            except OSError as error:
                raise TemplateError(f"{directory}: cannot read: {error.strerror}") from None
            found.update(m.group(1) for name in names if (m := _FILE_NAME.fullmatch(name)))
        return sorted(found)

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages a mail can be written in: the templates present."""
        return tuple(sorted(self.templates))

    def is_custom(self, language: str) -> bool:
        return self.custom is not None and (self.custom / template_file(language)).is_file()

    def path(self, language: str) -> Path:
        """The file the language's template is served from."""
        if self.custom is not None and self.is_custom(language):
            return self.custom / template_file(language)
        return self.shipped / template_file(language)

    def source(self, language: str) -> bytes:
        return self.path(language).read_bytes()

    def install(self, language: str, text: bytes) -> None:
        """Check ``text`` and make it the language's template; a refused one raises
        `TemplateError` and changes nothing."""
        if not LANGUAGE_CODE.fullmatch(language):
            raise TemplateError(f"{language!r} is not a language code (2 or 3 letters a-z)")
        if self.custom is None:
            raise TemplateError("no directory for customised templates is configured")
        transform = load_template(text, template_file(language))
        target = self.custom / template_file(language)
        partial = target.with_name(target.name + ".new")
        try:
            self.custom.mkdir(parents=True, exist_ok=True)
            with open(partial, "wb") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, target)
        except OSError as error:
            raise TemplateError(f"{target}: cannot write: {error.strerror}") from None
        self.templates[language] = transform

    def remove(self, language: str) -> None:
        """Drop the customised template: the shipped one serves again (if there is one)."""
        if not self.is_custom(language) or self.custom is None:
            return
        path = self.custom / template_file(language)
        shipped = self.shipped / template_file(language)
        if not shipped.is_file() and len(self.templates) == 1:
            raise TemplateError(f"{path}: the only template cannot be removed")
        try:
            path.unlink()
        except OSError as error:
            raise TemplateError(f"{path}: cannot remove: {error.strerror}") from None
        if shipped.is_file():
            self.templates[language] = load_template(shipped.read_bytes(), str(shipped))
        else:
            del self.templates[language]

    def preview(self, text: bytes | None, language: str) -> str:
        """The HTML of the sample call, from ``text`` (checked first) or the installed template."""
        transform = self.templates[language] if text is None else load_template(text)
        return str(transform(notice_document(SAMPLE, language)))

    def render(self, notice: Notice, language: str) -> Rendered:
        if language not in self.templates:
            language = next(iter(self.templates))
        words = language if language in _SUBJECT else "en"
        who = (
            notice.contact_name
            or notice.caller_name
            or (_WITHHELD[words] if notice.suppressed else notice.caller_num)
            or _UNKNOWN[words]
        )
        who = _clean(who)
        result = self.templates[language](notice_document(notice, language))
        html = str(result)
        when = datetime.datetime.fromtimestamp(notice.time).astimezone()
        text = _TEXT[words].format(
            user=_clean(notice.user_name),
            ext=notice.user_extension,
            who=who,
            number=("-" if notice.suppressed else _clean(notice.caller_num)) or "-",
            when=when.strftime("%d.%m.%Y %H:%M" if words == "de" else "%Y-%m-%d %H:%M"),
            seconds=round(notice.ring_seconds),
        )
        if notice.answered_by:
            text += _ANSWERED[words].format(by=_clean(notice.answered_by))
        subject = _SUBJECT[words].format(who=who)
        if language not in _SUBJECT:
            # A language added by a template file: its own words, from its HTML.
            title = _clean(" ".join(result.xpath("string(//title)").split()))
            subject = f"{title}: {who}" if title else subject
            body = result.xpath("//body")
            if body:
                lines = (" ".join(line.split()) for line in body[0].xpath("string(.)").splitlines())
                text = "\n".join(line for line in lines if line) + "\n"
        return Rendered(subject, text, html)
