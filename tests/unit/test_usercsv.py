"""Users as CSV: export, checked import with every bad line, all or nothing (pure and on the page)."""

from __future__ import annotations

import html
import re

from appliance.directory import User
from appliance.usercsv import parse_users_csv, users_csv
from tests.unit.test_web import Browser, Lab, make_lab
from tests.unit.test_web_features import upload

USERS = [
    User("200", "Anna Berg", "anna@example.org", "de", ("sales", "support"), ("+4930200",), ("200-soft",)),
    User("201", '=HYPERLINK("x")', "", "en"),
]


def test_round_trip() -> None:
    """What the export writes, the import reads back unchanged, formula guard included."""
    text = users_csv(USERS)
    assert text.splitlines()[0] == "extension,name,email,language,groups,devices,numbers"
    assert "'=HYPERLINK" in text
    assert parse_users_csv(text).users == tuple(USERS)


def test_semicolons_any_column_order_and_existing_flags() -> None:
    """A German spreadsheet's semicolons, columns in another order; flags of known users stay."""
    text = "Name;Extension;E-Mail\nAnna;200;anna@example.org\n"
    known = User("200", "Old", language="en", from_pbx=True, vanished=True)
    [user] = parse_users_csv(text, {"200": known}).users
    assert user == User("200", "Anna", "anna@example.org", "en", from_pbx=True, vanished=True)


def test_no_language_column_or_cell_chooses_none() -> None:
    """A new user without a language (no column, or an empty cell) has none of its own:
    the appliance's language and MC_LANGUAGE apply. An empty cell clears a known user's
    choice (without the column it stays, as the test above shows)."""
    text = "extension;name;language\n230;Neu;\n231;Zwei;en\n200;Known;\n"
    known = User("200", "Old", language="en")
    users = parse_users_csv(text, {"200": known}).users
    assert [(u.extension, u.language) for u in users] == [("230", ""), ("231", "en"), ("200", "")]
    [plain] = parse_users_csv("extension,name\n232,Drei\n").users
    assert plain.language == ""


def test_every_bad_line_with_its_reason() -> None:
    """Each bad line is reported with number and reason; good lines do not hide them."""
    text = (
        "extension,name,email,language\n"
        "200,Anna,anna@example.org,de\n"
        "2,Short,,de\n"
        "201,Ben,not-a-mail,en\n"
        "200,Anna again,,de\n"
        "202,Cara,,fr\n"
        "203,Dan\n"
        "\n"
        "204,,,de\n"
    )
    parsed = parse_users_csv(text)
    assert [(p.line, p.reason) for p in parsed.problems] == [
        (3, "extension: '2' is not 2 to 8 digits"),
        (4, "201: email: 'not-a-mail' is not an e-mail address"),
        (5, "extension 200 is already on line 2"),
        (6, "202: language: 'fr' is not one of de, en"),
        (7, "2 cells, the header has 4"),
        (9, "204: name: must not be empty"),
    ]


def test_bad_header() -> None:
    """A header with unknown or missing columns is line 1's problem."""
    [problem] = parse_users_csv("ext,name,phone\n200,A,1\n").problems
    assert problem.line == 1 and "unknown column(s) ext, phone" in problem.reason
    assert "missing column(s) extension" in problem.reason


def admin_browser() -> tuple[Lab, Browser]:
    lab = make_lab()
    browser = lab.browser()
    assert browser.login("admin", "admin-secret").code == 303
    return lab, browser


def test_page_preview_then_confirm_stores_all() -> None:
    """Upload shows a preview (new/changed) and stores nothing; confirming stores all at once."""
    lab, admin = admin_browser()
    before = lab.directory.users()
    text = users_csv([*before[:1], User("230", "Neu Nutzer", language="de")])
    token = admin.csrf("/admin/users")
    preview = upload(admin, "/admin/users/import", {"csrf": token}, "users.csv", text.encode())
    assert preview.code == 200 and "1 new, 0 changed" in preview.text
    assert lab.directory.user("230") is None
    content = html.unescape(re.search(r'name="content" value="([^"]*)"', preview.text).group(1))
    done = admin.post("/admin/users/import/confirm", {"csrf": token, "content": content})
    assert (done.code, done.header("location")) == (303, "/admin/users?imported=2")
    assert lab.directory.user("230") == User("230", "Neu Nutzer", language="de")


def test_page_lists_bad_lines_and_stores_nothing() -> None:
    """A file with a bad line: 400, every bad line listed, no user stored, no confirm button."""
    lab, admin = admin_browser()
    token = admin.csrf("/admin/users")
    text = "extension,name\n240,Good\n24x,<script>x</script>\n"
    reply = upload(admin, "/admin/users/import", {"csrf": token}, "users.csv", text.encode())
    assert reply.code == 400 and "confirm-import" not in reply.text
    assert re.findall(r'<td class="line">(\d+)</td>', reply.text) == ["3"]
    assert "&#39;24x&#39; is not 2 to 8 digits" in reply.text and "<script>" not in reply.text
    assert lab.directory.user("240") is None
    forged = admin.post("/admin/users/import/confirm", {"csrf": token, "content": text})
    assert forged.code == 400 and lab.directory.user("240") is None


def test_export_download() -> None:
    """The export is a CSV attachment with every user."""
    lab, admin = admin_browser()
    reply = admin.get("/admin/users/export.csv")
    assert reply.header("content-type") == "text/csv; charset=utf-8"
    assert "attachment" in reply.header("content-disposition")
    assert parse_users_csv(reply.text).users == tuple(lab.directory.users())


def test_users_page_pages() -> None:
    """250 users: 100 a page by extension, with a link to the next page."""
    lab, admin = admin_browser()
    lab.directory.put_users([User(str(1000 + i), f"U {i}") for i in range(250)])
    first = admin.get("/admin/users").text
    rows = re.findall(r'<tr id="user-(\d+)">', first)
    assert len(rows) == 100 and rows == sorted(rows)
    link = re.search(r'<a rel="next" href="([^"]+)"', first).group(1)
    second = re.findall(r'<tr id="user-(\d+)">', admin.get(html.unescape(link)).text)
    assert second[0] > rows[-1] and len(second) == 100


def test_users_page_flags_vanished_endpoints_and_edit_keeps_flags() -> None:
    """A user whose endpoint is gone is flagged on the list; saving the form (with a new
    device) keeps the Asterisk flags."""
    lab, admin = admin_browser()
    lab.directory.put_user(User("260", "Gone Phone", from_pbx=True, vanished=True))
    lab.directory.put_user(User("261", "Here Phone", from_pbx=True))
    page = admin.get("/admin/users").text
    row = page[page.index('<tr id="user-260">') :]
    assert "endpoint gone" in row[: row.index("</tr>")]
    row = page[page.index('<tr id="user-261">') :]
    assert "from Asterisk" in row[: row.index("</tr>")]
    token = admin.csrf("/admin/users/260")
    fields = {"csrf": token, "name": "Gone Phone", "language": "de", "devices": "260-soft"}
    assert admin.post("/admin/users/260", fields).code == 303
    assert lab.directory.user("260") == User(
        "260", "Gone Phone", language="de", devices=("260-soft",), from_pbx=True, vanished=True
    )
    assert lab.directory.owner_of("260-soft").extension == "260"
