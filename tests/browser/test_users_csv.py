"""Users CSV round trip in real Chromium: download the export, change it, upload it,
see the preview (bad lines with reasons first), confirm, find the users stored."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from appliance.directory import User
from appliance.usercsv import parse_users_csv
from tests.browser.conftest import ADMIN_PASSWORD, Running, log_in, screenshot


@pytest.fixture
def admin(page: Page, running: Running) -> Page:
    log_in(page, running, "admin", ADMIN_PASSWORD)
    expect(page).to_have_url(running.url + "/admin/settings")
    return page


def test_csv_round_trip(admin: Page, running: Running, tmp_path: Path) -> None:
    """Export → edit → a bad line is refused with its reason and nothing stored → fixed
    → preview → import all: the running appliance has the users as the file says."""
    running.add_user(User("410", "Ola Export", "ola@example.com", "de", ("sales",)), "ola-secret-1")
    admin.goto(running.url + "/admin/users")
    with admin.expect_download() as download:
        admin.click("text=Export CSV")
    exported = Path(download.value.path()).read_text(encoding="utf-8")
    assert "410,Ola Export,ola@example.com,de,sales,," in exported

    edited = (
        exported.replace("410,Ola Export,", "410,Ola Import,")
        + "411,Pia Neu,pia@example.com,en,sales support,,\r\n"
    )
    bad = edited + "41x,Broken,,de,,,\r\n"
    (tmp_path / "bad.csv").write_text(bad, encoding="utf-8")
    admin.set_input_files("#csv-file", str(tmp_path / "bad.csv"))
    admin.click("text=Check")
    expect(admin.locator("td.reason")).to_have_text(["extension: '41x' is not 2 to 8 digits"])
    expect(admin.locator("#confirm-import")).to_have_count(0)
    screenshot(admin, "20-users-csv-bad-line")
    assert running.call(running.appliance.directory.user, "411") is None

    admin.goto(running.url + "/admin/users")
    (tmp_path / "good.csv").write_text(edited, encoding="utf-8")
    admin.set_input_files("#csv-file", str(tmp_path / "good.csv"))
    admin.click("text=Check")
    expect(admin.get_by_role("status")).to_contain_text("1 new, 1 changed")
    screenshot(admin, "21-users-csv-preview")
    assert running.call(running.appliance.directory.user, "411") is None
    admin.click("#confirm-import")
    expect(admin.get_by_role("status")).to_contain_text("users imported.")
    directory = running.appliance.directory
    assert running.call(directory.user, "410") == User(
        "410", "Ola Import", "ola@example.com", "de", ("sales",)
    )
    assert running.call(directory.user, "411") == User(
        "411", "Pia Neu", "pia@example.com", "en", ("sales", "support")
    )
    with admin.expect_download() as again:
        admin.click("text=Export CSV")
    round_trip = parse_users_csv(Path(again.value.path()).read_text(encoding="utf-8")).users
    assert round_trip == tuple(running.call(directory.users))


def test_large_csv_import_in_slices(admin: Page, running: Running, tmp_path: Path) -> None:
    """1,000 users (checked and stored in slices by the running appliance) arrive whole."""
    lines = ["extension,name,email,language,groups"]
    lines += [f"{5000 + i},Massen Nutzer {i},m{i}@example.com,de,bulk" for i in range(1000)]
    (tmp_path / "many.csv").write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    admin.goto(running.url + "/admin/users")
    admin.set_input_files("#csv-file", str(tmp_path / "many.csv"))
    admin.click("text=Check")
    expect(admin.get_by_role("status")).to_contain_text("1000 new, 0 changed")
    admin.click("#confirm-import")
    expect(admin.get_by_role("status")).to_contain_text("1000 users imported.")
    directory = running.appliance.directory
    members = running.call(directory.members_of, "bulk")
    assert len(members) == 1000 and members[0] == User(
        "5000", "Massen Nutzer 0", "m0@example.com", "de", ("bulk",)
    )
