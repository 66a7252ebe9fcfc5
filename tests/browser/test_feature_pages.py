"""The feature pages in real headless Chromium: forwards, callbacks, journal,
notifications and contacts, on the appliance of ``conftest.running``."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Dialog, Page, expect

from appliance.callback.engine import Kind
from appliance.directory import Group, User
from appliance.forwarding.records import Forward
from appliance.missed.journal import Entry
from tests.browser.conftest import ADMIN_PASSWORD, Running, log_in, screenshot

SCRIPT = "<script>alert(1)</script>"
VCARDS = (
    "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:browser-1\r\nFN:Erika Muster\r\nTEL:+49 30 123456\r\n"
    "EMAIL:erika@example.com\r\nORG:Muster GmbH\r\nEND:VCARD\r\n"
    "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:browser-2\r\nFN:Max Beispiel\r\nTEL:0301234567\r\nEND:VCARD\r\n"
)


@pytest.fixture
def admin(page: Page, running: Running) -> Page:
    log_in(page, running, "admin", ADMIN_PASSWORD)
    expect(page).to_have_url(running.url + "/admin/settings")
    return page


@pytest.fixture
def carla(page: Page, running: Running) -> Page:
    """User 210 (English), logged in; her forwards and journal start empty."""
    running.add_user(User("210", "Carla Diaz", "carla@example.com", "en"), "carla-secret")
    running.add_user(User("220", "Dan Eby", "", "en"), "dan-secret")

    def reset() -> None:
        for user in ("210", "220"):
            running.appliance.forwarding.forwards.clear(user)
            running.appliance.store.delete("journal", user)
            running.appliance.store.delete("mail_optin", user)
        for request in running.appliance.callbacks.pending():
            running.appliance.callbacks.cancel(request.id)

    running.call(reset)
    log_in(page, running, "210", "carla-secret")
    expect(page).to_have_url(running.url + "/me")
    return page


def add_missed(running: Running, user: str, entry: Entry) -> None:
    journal = running.appliance.missed.journal
    running.call(lambda: journal.store.apply(journal.additions({user: entry})))


def test_user_sets_and_removes_a_forward(carla: Page, running: Running) -> None:
    """The forwards form stores an unconditional forward for the user, and Remove deletes it."""
    forwards = running.appliance.forwarding.forwards
    carla.click("nav >> text=Forwards")
    expect(carla).to_have_url(running.url + "/me/forwards")
    carla.select_option("#kind", "unconditional")
    carla.select_option("#scope", "all")
    carla.fill("#target", "300")
    carla.click("form.forward-form button[type=submit]")
    expect(carla.get_by_role("status")).to_have_text("Forward saved.")
    expect(carla.locator("#forward-unconditional-all td.number")).to_have_text("300")
    assert running.call(forwards.of, "210") == [Forward("unconditional", "300")]
    carla.select_option("#kind", "noanswer")
    carla.fill("#target", "+49301234")
    carla.fill("#seconds", "15")
    carla.click("form.forward-form button[type=submit]")
    expect(carla.locator("#forward-noanswer-all td.number")).to_have_text("+49301234")
    screenshot(carla, "10-user-forwards")
    carla.fill("#target", "abc")
    carla.click("form.forward-form button[type=submit]")
    expect(carla.get_by_role("alert")).to_have_text("forward of 210: target: 'abc' is not a phone number")
    screenshot(carla, "11-user-forwards-invalid")
    carla.click("#forward-unconditional-all button")
    expect(carla.get_by_role("status")).to_have_text("Forward removed.")
    assert running.call(forwards.of, "210") == [Forward("noanswer", "+49301234", seconds=15)]


def test_script_caller_name_shows_as_text_in_the_journal(carla: Page, running: Running) -> None:
    """A missed call from a caller named <script>… is shown as text: no dialog, no script element."""
    dialogs: list[Dialog] = []

    def dismissed(dialog: Dialog) -> None:
        dialogs.append(dialog)
        dialog.dismiss()

    carla.on("dialog", dismissed)
    add_missed(running, "210", Entry("call-1", 1_790_000_000, "03012345", "Erika Muster", "+493012345", 8.0))
    add_missed(running, "210", Entry("call-2", 1_790_000_600, "0666", SCRIPT, "0666", 21.0))
    carla.click("nav >> text=Missed calls")
    expect(carla).to_have_url(running.url + "/me/journal")
    names = carla.locator("td.caller-name")
    expect(names).to_have_text([SCRIPT, "Erika Muster"])  # newest first
    assert carla.locator("main script").count() == 0
    screenshot(carla, "12-user-journal")
    carla.click("#missed-1 button")
    expect(carla.get_by_role("status")).to_have_text("Marked as seen.")
    journal = running.appliance.missed.journal
    assert running.call(lambda: [e.seen for e in journal.entries("210")]) == [True, False]
    assert dialogs == []


def test_user_sees_own_callbacks_and_cancels_one(carla: Page, running: Running) -> None:
    """The user's callback page lists only their requests; Cancel removes one from the service."""
    engine = running.appliance.callbacks.engine
    running.call(lambda: (engine.request("210", "220", Kind.CCNR), engine.request("220", "210", Kind.CCNR)))
    carla.click("nav >> text=Callbacks")
    expect(carla.locator("tbody tr")).to_have_count(1)
    expect(carla.locator("#callback-210-220 .name")).to_have_text("Dan Eby")
    screenshot(carla, "13-user-callbacks")
    carla.click("#callback-210-220 button")
    expect(carla.get_by_role("status")).to_have_text("Callback request cancelled.")
    assert running.call(lambda: [r.id for r in running.appliance.callbacks.pending()]) == ["220:210"]


def test_group_callback_request_shows_the_group(carla: Page, running: Running) -> None:
    """A request for a group's number (its member logged out) is listed under the
    group's name on the requester's page, and Cancel ends it."""
    directory, engine = running.appliance.directory, running.appliance.callbacks.engine
    running.call(directory.put_group, Group("Support", "651", ("220",)))
    running.call(engine.request, "210", "651")
    assert running.call(lambda: [r.group for r in engine.pending(requester="210")]) == [True]
    carla.click("nav >> text=Callbacks")
    expect(carla.locator("#callback-210-651 .name")).to_have_text("Support")
    carla.click("#callback-210-651 button")
    expect(carla.get_by_role("status")).to_have_text("Callback request cancelled.")
    assert running.call(lambda: [r.id for r in engine.pending(requester="210")]) == []


def test_user_opts_out_of_missed_call_mail(carla: Page, running: Running) -> None:
    """Unticking the box and saving opts the user out in the journal's opt-in store."""
    carla.click("nav >> text=Notifications")
    expect(carla.locator("#opt_in")).to_be_checked()
    carla.uncheck("#opt_in")
    carla.click("form.card button[type=submit]")
    expect(carla.get_by_role("status")).to_have_text("Your choice is saved.")
    expect(carla.locator("#opt_in")).not_to_be_checked()
    screenshot(carla, "14-user-notifications")
    assert running.call(running.appliance.missed.journal.opted_in, "210") is False


def test_user_cannot_reach_other_users_data(carla: Page, running: Running) -> None:
    """Admin pages naming user 220 answer 403 to user 210, and 220's data never shows."""
    forwards = running.appliance.forwarding.forwards
    running.call(forwards.set, "220", Forward("unconditional", "399"))
    add_missed(running, "220", Entry("secret", 1_790_000_000, "0777", "Secret Caller", "0777", 3.0))
    for path in ("/admin/forwards/220", "/admin/journal?user=220", "/admin/callbacks", "/admin/contacts"):
        response = carla.goto(running.url + path)
        assert response is not None and response.status == 403, path
        expect(carla.locator("h1")).to_have_text("Access denied")
    carla.goto(running.url + "/me/forwards")
    expect(carla.locator("main")).not_to_contain_text("399")
    carla.goto(running.url + "/me/journal")
    expect(carla.locator("main")).not_to_contain_text("Secret Caller")
    reply = carla.request.post(
        running.url + "/me/forwards/remove", form={"kind": "unconditional", "scope": "all"}
    )
    assert reply.status == 403  # no CSRF token
    assert running.call(forwards.of, "220") == [Forward("unconditional", "399")]


def test_admin_pages(admin: Page, running: Running, tmp_path: Path) -> None:
    """The admin sees every user's forwards, callbacks, journal and opt-in, and imports contacts."""
    running.add_user(User("230", "Eva Fink", "eva@example.com", "de"), "eva-secret-1")
    running.call(running.appliance.forwarding.forwards.set, "230", Forward("busy", "231"))
    engine = running.appliance.callbacks.engine
    running.call(lambda: engine.request("230", "231", Kind.CCNR))
    add_missed(running, "230", Entry("adm-1", 1_790_000_000, "0555", SCRIPT, "0555", 12.0))

    admin.click("nav >> text=Forwards")
    expect(admin.locator("#user-230")).to_contain_text("231")
    screenshot(admin, "20-admin-forwards")
    admin.click("#user-230 >> text=Edit")
    admin.fill("#target", "232")
    admin.click("form.forward-form button[type=submit]")
    expect(admin.get_by_role("status")).to_have_text("Forward saved.")
    screenshot(admin, "21-admin-forwards-of-user")
    assert running.call(running.appliance.forwarding.forwards.of, "230") == [
        Forward("busy", "231"),
        Forward("unconditional", "232"),
    ]

    admin.click("nav >> text=Callbacks")
    expect(admin.locator("#callback-230-231")).to_be_visible()
    screenshot(admin, "22-admin-callbacks")
    admin.click("#callback-230-231 button")
    expect(admin.get_by_role("status")).to_have_text("Callback request cancelled.")
    assert running.call(lambda: [r.id for r in engine.pending(requester="230")]) == []

    admin.click("nav >> text=Missed calls")
    admin.fill("#user", "230")
    admin.click("form.filter button")
    expect(admin.locator("td.caller-name")).to_have_text([SCRIPT])
    assert admin.locator("main script").count() == 0
    screenshot(admin, "23-admin-journal")

    admin.click("nav >> text=Notifications")
    expect(admin.locator("#user-230")).to_contain_text("eva@example.com")
    screenshot(admin, "24-admin-notifications")

    admin.click("nav >> text=Contacts")
    broken = tmp_path / "broken.vcf"
    broken.write_text("BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Broken\r\n")
    admin.set_input_files("#file", str(broken))
    admin.click("form.card button[type=submit]")
    expect(admin.get_by_role("alert")).to_contain_text("Nothing was imported: not a valid vCard file")
    screenshot(admin, "25-admin-contacts-error")
    cards = tmp_path / "team.vcf"
    cards.write_text(VCARDS)
    admin.set_input_files("#file", str(cards))
    admin.click("form.card button[type=submit]")
    expect(admin.get_by_role("status")).to_have_text("2 contacts imported.")
    expect(admin.locator("table.contacts td.name")).to_contain_text(["Erika Muster", "Max Beispiel"])
    screenshot(admin, "26-admin-contacts")
    names = running.call(lambda: sorted(c.name for c in running.appliance.contacts.contacts()))
    assert {"Erika Muster", "Max Beispiel"} <= set(names)
