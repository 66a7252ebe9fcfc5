"""The mail-template page (download, upload, preview, back to shipped) and the logins
the missed-call exceptions count, through StubTreq."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.missed.journal import Entry, Journal
from appliance.missed.render import DEFAULT_DIRECTORY, Renderer
from appliance.web.pages.journal import JournalPages
from appliance.web.pages.templates import TemplatePages
from tests.unit.test_web import Browser, Lab, Reply, make_lab
from tests.unit.test_web_features import logged_in, upload

HEAD = '<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
GOOD = (HEAD + '<xsl:template match="/"><html><body><p>Custom mail</p></body></html></xsl:template>'
        "</xsl:stylesheet>").encode()  # fmt: skip
BROKEN = (HEAD + '\n<xsl:template match="/">\n<html>\n</xsl:template>\n</xsl:stylesheet>').encode()


@pytest.fixture
def lab() -> Lab:
    return make_lab()


@pytest.fixture
def renderer(lab: Lab, tmp_path: Path) -> Renderer:
    renderer = Renderer(custom=tmp_path / "xsl")
    lab.web.add(TemplatePages(renderer))
    return renderer


@pytest.fixture
def admin(lab: Lab, renderer: Renderer) -> Browser:
    return logged_in(lab, "admin", "admin-secret")


def send(admin: Browser, language: str, content: bytes, action: str = "save") -> Reply:
    token = admin.csrf("/admin/templates")
    fields = {"csrf": token, "language": language, "action": action}
    return upload(admin, "/admin/templates", fields, f"missed_call.{language}.xsl", content)


def test_page_lists_the_languages_and_where_they_come_from(admin: Browser, renderer: Renderer) -> None:
    """Every language present is listed, shipped or customised, with download and preview."""
    renderer.install("de", GOOD)
    page = admin.get("/admin/templates").text
    assert 'id="template-de"' in page and 'id="template-en"' in page
    de = page[page.index('id="template-de"') : page.index('id="template-en"')]
    assert "customised" in de and "/admin/templates/de/download" in de and "Back to shipped" in de


def test_download_gives_the_serving_template(admin: Browser, renderer: Renderer) -> None:
    """The download is the file that serves the language, as an attachment."""
    reply = admin.get("/admin/templates/en/download")
    assert reply.code == 200
    assert reply.text.encode() == (DEFAULT_DIRECTORY / "missed_call.en.xsl").read_bytes()
    assert reply.header("content-disposition") == 'attachment; filename="missed_call.en.xsl"'
    assert admin.get("/admin/templates/xx/download").code == 404


def test_good_upload_is_saved_and_serves(admin: Browser, renderer: Renderer, tmp_path: Path) -> None:
    """A good template is written to the customised directory and serves at once."""
    reply = send(admin, "en", GOOD)
    assert (reply.code, reply.header("location")) == (303, "/admin/templates?done=saved")
    assert (tmp_path / "xsl" / "missed_call.en.xsl").read_bytes() == GOOD
    assert "Custom mail" in renderer.preview(None, "en")


def test_broken_upload_is_refused_with_line_and_reason(
    admin: Browser, renderer: Renderer, tmp_path: Path
) -> None:
    """A broken template is refused with its line and reason; the old one keeps serving."""
    reply = send(admin, "en", BROKEN)
    assert reply.code == 400
    text = reply.text
    assert "The template was refused; the previous one stays in use." in text
    assert 'Line <span class="line">4</span>' in text and "not well-formed XML" in text
    assert not (tmp_path / "xsl").exists()
    assert renderer.source("en") == (DEFAULT_DIRECTORY / "missed_call.en.xsl").read_bytes()


def test_preview_of_an_upload_renders_the_sample_sandboxed(admin: Browser, renderer: Renderer) -> None:
    """Preview shows the sample call through the uploaded template without saving it,
    under a sandboxing policy."""
    reply = send(admin, "en", GOOD, action="preview")
    assert reply.code == 200
    assert "Custom mail" in reply.text
    assert reply.header("content-security-policy").startswith("sandbox;")
    assert not renderer.is_custom("en")
    shown = admin.get("/admin/templates/de/preview")
    assert shown.code == 200 and "Sample Contact" in shown.text


def test_new_language_and_back_to_shipped(admin: Browser, renderer: Renderer) -> None:
    """An upload for a new code adds a language; "back to shipped" removes the customisation."""
    send(admin, "fr", GOOD)
    send(admin, "de", GOOD)
    assert renderer.languages == ("de", "en", "fr")
    token = admin.csrf("/admin/templates")
    assert admin.post("/admin/templates/de/remove", {"csrf": token}).code == 303
    assert admin.post("/admin/templates/fr/remove", {"csrf": token}).code == 303
    assert renderer.languages == ("de", "en") and not renderer.is_custom("de")


@pytest.mark.parametrize(
    ("language", "content", "message"),
    [
        ("../x", GOOD, "The language code must be 2 or 3 letters a-z."),
        ("en", b"", "Please choose an .xsl file."),
    ],
)
def test_bad_upload_form(
    admin: Browser, renderer: Renderer, language: str, content: bytes, message: str
) -> None:
    """A bad language code or a missing file is refused before any template check."""
    reply = send(admin, language, content)
    assert reply.code == 400 and message in reply.text


def test_users_may_not_touch_templates(lab: Lab, renderer: Renderer) -> None:
    """The page is the admin's; a user is refused, without a token nothing happens."""
    anna = logged_in(lab, "100", "anna-secret")
    assert anna.get("/admin/templates").code == 403
    admin = logged_in(lab, "admin", "admin-secret")
    reply = upload(admin, "/admin/templates", {"language": "en"}, "x.xsl", GOOD)
    assert reply.code == 403 and not renderer.is_custom("en")


def test_web_login_and_journal_seen_are_reported(lab: Lab) -> None:
    """A user's web login and marking the journal seen tell the missed-call service."""
    heard: list[tuple[str, str]] = []
    journal = Journal(lab.store)
    lab.web.on_login(lambda login: heard.append(("login", login)))
    lab.web.add(JournalPages(journal, lab.directory, lambda user: heard.append(("seen", user))))
    journal.store.apply(journal.additions({"100": Entry("c1", 1.0, "+4930", "X", "+4930", 3.0)}))
    anna = logged_in(lab, "100", "anna-secret")
    anna.post("/me/journal/seen", {"csrf": anna.csrf("/me/journal"), "all": "1"})
    assert heard == [("login", "100"), ("seen", "100")]
    assert journal.unseen("100") == 0


def test_settings_page_explains_login_and_language(lab: Lab) -> None:
    """The settings page says what "logged in again" means and how the mail's language
    is chosen."""
    admin = logged_in(lab, "admin", "admin-secret")
    page = admin.get("/admin/settings?q=MC_").text
    assert (
        "a web login, the phone registering again, or marking the journal seen, whichever comes first" in page
    )
    assert "A user&#39;s own language comes first" in page


def test_template_upload_gets_the_upload_body_limit(lab: Lab, renderer: Renderer) -> None:
    """A template upload is a file upload: it may be larger than a plain form."""
    web = lab.web
    assert web.body_limit(b"POST", b"/admin/templates") == web.limits.upload_body > web.limits.form_body
