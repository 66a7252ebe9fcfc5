"""The settings page in real headless Chromium against the running appliance."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect

from appliance.directory import Group, User
from tests.browser.conftest import ADMIN_PASSWORD, Running, log_in, screenshot


@pytest.fixture
def admin(page: Page, running: Running) -> Page:
    log_in(page, running, "admin", ADMIN_PASSWORD)
    expect(page).to_have_url(running.url + "/admin/settings")
    return page


def cc_timeout(running: Running) -> Any:
    return running.call(lambda: running.appliance.settings.get("CC_TIMEOUT"))


def test_login_page(page: Page, running: Running) -> None:
    """The login page asks for login and password, and a wrong password gets the generic message."""
    page.goto(running.url + "/")
    expect(page).to_have_url(running.url + "/login")
    screenshot(page, "01-login")
    log_in(page, running, "admin", "not-the-password")
    expect(page.get_by_role("alert")).to_have_text("Login failed.")


def test_admin_filters_and_saves_cc_timeout(admin: Page, running: Running) -> None:
    """Filtering for CC_ and saving CC_TIMEOUT changes the running appliance's setting at once."""
    heard: list[tuple[str, Any]] = []
    unsubscribe = running.call(
        running.appliance.settings.subscribe, lambda name, value: heard.append((name, value)), ["CC_TIMEOUT"]
    )
    try:
        admin.fill("#q", "CC_")
        admin.click("form.filter button")
        expect(admin).to_have_url(running.url + "/admin/settings?q=CC_")
        keys = admin.locator("tbody th").all_inner_texts()
        assert "CC_TIMEOUT" in keys and all(key.startswith("CC_") for key in keys)
        new = 45 if cc_timeout(running) != 45 else 46
        admin.fill("#value\\.CC_TIMEOUT", str(new))
        admin.click("form.settings button[type=submit]")
        expect(admin.get_by_role("status")).to_have_text("Saved.")
        expect(admin.locator("#value\\.CC_TIMEOUT")).to_have_value(str(new))
        screenshot(admin, "02-settings-filtered-saved")
        assert cc_timeout(running) == new
        assert running.call(lambda: list(heard)) == [("CC_TIMEOUT", new)]
    finally:
        running.call(unsubscribe)


def test_filter_narrows_rows_while_typing(admin: Page, running: Running) -> None:
    """With script, typing in the filter hides non-matching rows without a page load."""
    admin.fill("#q", "wait_t")
    expect(admin.locator("tbody tr:visible")).to_have_count(1)
    expect(admin.locator("tbody tr:visible th")).to_have_text("CC_WAIT_TIME")
    expect(admin).to_have_url(running.url + "/admin/settings")
    admin.fill("#q", "")
    expect(admin.locator("tbody tr:visible")).to_have_count(admin.locator("tbody tr").count())


@pytest.mark.parametrize(
    ("raw", "reason"),
    [("-5", "CC_TIMEOUT: '-5' is out of range"), ("abc", "CC_TIMEOUT: 'abc' is not a whole number")],
)
def test_invalid_cc_timeout_shows_error_and_changes_nothing(
    admin: Page, running: Running, raw: str, reason: str
) -> None:
    """An invalid CC_TIMEOUT shows the reason beside the field and the appliance keeps its value."""
    before = cc_timeout(running)
    admin.goto(running.url + "/admin/settings?q=CC_")
    admin.fill("#value\\.CC_TIMEOUT", raw)
    admin.fill("#value\\.CC_WAIT_TIME", "33")
    admin.click("form.settings button[type=submit]")
    error = admin.locator("#error-CC_TIMEOUT")
    expect(error).to_have_text(f"{reason} (allowed: 1 to 10080 minutes)")
    expect(admin.locator("#value\\.CC_TIMEOUT")).to_have_value(raw)
    expect(admin.locator("p.notice.error")).to_have_text(
        "Nothing was saved. Please correct the marked fields."
    )
    if raw == "abc":
        screenshot(admin, "03-settings-invalid-value")
    assert cc_timeout(running) == before
    assert running.call(lambda: running.appliance.settings.get("CC_WAIT_TIME")) == 20


def test_user_cannot_open_admin_pages(page: Page, running: Running) -> None:
    """A user logs in to their own profile, and the admin pages answer 403."""
    running.add_user(User("101", "Dora Ek", "dora@example.com", "de"), "dora-secret")
    log_in(page, running, "101", "dora-secret")
    expect(page).to_have_url(running.url + "/me")
    expect(page.locator("h1")).to_have_text("Mein Profil")
    screenshot(page, "05-user-profile")
    for path in ("/admin/settings", "/admin/users"):
        response = page.goto(running.url + path)
        assert response is not None and response.status == 403
        expect(page.locator("h1")).to_have_text("Zugriff verweigert")
    screenshot(page, "06-user-forbidden")
    assert page.locator("nav a").all_inner_texts() == [
        "Mein Profil",
        "Umleitungen",
        "Zeitsteuerung",
        "Rückrufe",
        "Verpasste Anrufe",
        "Benachrichtigung",
        "API-Tokens",
    ]


def test_script_in_a_name_shows_as_text(admin: Page, running: Running) -> None:
    """A directory name containing <script> appears as text and runs nothing."""
    name = "<script>alert(1)</script>"
    running.add_user(User("102", name, "", "en"), "mallory-secret")
    dialogs: list[Dialog] = []

    def dismissed(dialog: Dialog) -> None:
        dialogs.append(dialog)
        dialog.dismiss()

    admin.on("dialog", dismissed)
    admin.click("nav >> text=Users")
    expect(admin).to_have_url(running.url + "/admin/users")
    cell = admin.locator("#user-102 .name")
    expect(cell).to_have_text(name)
    assert cell.locator("script").count() == 0
    screenshot(admin, "04-users")
    admin.click("#user-102 >> text=Edit")
    expect(admin.locator("#name")).to_have_value(name)
    screenshot(admin, "07-user-edit")
    assert dialogs == []


def test_admin_adds_a_user_in_the_form(admin: Page, running: Running) -> None:
    """The add-user form stores a validated user in the running appliance's directory."""
    admin.goto(running.url + "/admin/users/new")
    admin.fill("#extension", "103")
    admin.fill("#name", "Emil Falk")
    admin.fill("#email", "emil@example.com")
    admin.fill("#groups", "sales support!")
    admin.click("form.card button[type=submit]")
    expect(admin.get_by_role("alert")).to_have_text("103: groups: 'support!' is not a group name")
    assert running.call(running.appliance.directory.user, "103") is None
    admin.select_option("#language", "en")
    admin.fill("#groups", "sales support")
    admin.click("form.card button[type=submit]")
    expect(admin.get_by_role("status")).to_have_text("Saved.")
    stored = running.call(running.appliance.directory.user, "103")
    assert stored == User("103", "Emil Falk", "emil@example.com", "en", ("sales", "support"))


def test_a_users_number_that_is_a_groups_is_refused_beside_its_field(
    admin: Page, browser: Browser, running: Running
) -> None:
    """Group 8650 exists: the add-user form refuses extension 8650 beside its field, in
    English; for a German browser, extension and further number 8650 each beside its
    field, in German; nothing is stored."""
    directory = running.appliance.directory
    running.call(directory.put_group, Group("zentrale", "8650"))
    german = browser.new_context(locale="de-DE")
    try:
        admin.goto(running.url + "/admin/users/new")
        admin.fill("#extension", "8650")
        admin.fill("#name", "Eve Clash")
        admin.click("form.card button[type=submit]")
        expect(admin.locator("#error-extension")).to_have_text(
            "Extension: 8650 is the number of group zentrale."
        )
        expect(admin.locator("#extension")).to_have_attribute("aria-invalid", "true")
        screenshot(admin, "08-user-number-clash")
        page = german.new_page()
        log_in(page, running, "admin", ADMIN_PASSWORD)
        page.goto(running.url + "/admin/users/new")
        page.fill("#extension", "8650")
        page.fill("#name", "Eve Clash")
        page.fill("#numbers", "8650")
        page.click("form.card button[type=submit]")
        expect(page.locator("#error-extension")).to_have_text(
            "Rufnummer: 8650 ist die Rufnummer der Gruppe zentrale."
        )
        expect(page.locator("#error-numbers")).to_have_text(
            "Weitere Rufnummern: 8650 ist die Rufnummer der Gruppe zentrale."
        )
        expect(page.get_by_role("alert").first).to_have_text(
            "Nichts wurde gespeichert. Bitte die markierten Felder korrigieren."
        )
        assert running.call(directory.user, "8650") is None
    finally:
        german.close()
        running.call(directory.delete_group, "zentrale")
