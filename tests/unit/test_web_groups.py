"""The admin's group pages through StubTreq: list with member states, add, edit,
delete, the group's forwards; refusals store nothing."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from appliance.directory import Directory, Group, User
from appliance.forwarding.records import Forward, Forwards
from appliance.forwarding.scheduled import Schedules
from appliance.pbx import PBXModel
from appliance.store import Change
from appliance.web.pages.groups import GroupPages
from tests.unit.test_web import Browser, Lab, make_lab

SCRIPT = "<script>alert(1)</script>"
FORM = {
    "name": "sales",
    "number": "600",
    "members": "200\n100",
    "strategy": "ringall",
    "ring_seconds": "20",
    "overflow": "none",
    "overflow_number": "",
}


@dataclass
class Groups:
    lab: Lab
    directory: Directory
    forwards: Forwards
    schedules: Schedules
    pbx: PBXModel


@pytest.fixture
def groups() -> Groups:
    return make_groups()


def make_groups() -> Groups:
    """Anna (100) and Ben (200) as in ``test_web``, the group pages over a PBX model."""
    lab = make_lab()
    forwards, schedules = Forwards(lab.store), Schedules(lab.store)
    pbx = PBXModel(clock=lab.clock)
    lab.web.add(GroupPages(lab.directory, forwards, schedules, pbx))
    return Groups(lab, lab.directory, forwards, schedules, pbx)


def admin(groups: Groups, language: str = "en") -> Browser:
    browser = groups.lab.browser(**{"Accept-Language": language})
    assert browser.login("admin", "admin-secret").code == 303
    return browser


def post(browser: Browser, path: str, fields: dict[str, str]) -> tuple[int, str, str]:
    """Submit a form as the page would (with its CSRF token): status, Location, body."""
    reply = browser.post(path, {"csrf": browser.csrf("/admin/groups"), **fields})
    return reply.code, reply.header("location"), reply.text


def field_error(html: str, field: str) -> str:
    found = re.search(rf'<div class="field-error" id="error-{field}" role="alert">([^<]*)</div>', html)
    assert found, f"no error shown beside {field}"
    return found.group(1)


def member_item(html: str, group: str, extension: str) -> str:
    found = re.search(rf'<li id="member-{group}-{extension}"[^>]*>(.*?)</li>', html, re.S)
    assert found, f"member {extension} of {group} not listed"
    return " ".join(found.group(1).split())


def test_admin_creates_a_group_the_router_finds_at_once(groups: Groups) -> None:
    """Saving the form stores the group in the directory the router asks, members in order."""
    code, location, _ = post(admin(groups), "/admin/groups/new", {**FORM, "strategy": "hunt"})
    assert (code, location) == (303, "/admin/groups/sales?done=saved")
    assert groups.directory.group_by_number("600") == Group("sales", "600", ("200", "100"), "hunt", 20, "")
    page = admin(groups).get(location)
    assert "Group saved." in page.text
    assert ">200\n100</textarea>" in page.text


def test_bad_fields_are_shown_beside_their_fields_and_nothing_is_stored(groups: Groups) -> None:
    """Each problem sits under its field, the form keeps what was typed, the store is untouched."""
    before = dict(groups.lab.store.items("groups"))
    bad = {**FORM, "number": "100", "members": "200\n999", "ring_seconds": "soon"}
    code, _, html = post(admin(groups), "/admin/groups/new", bad)
    assert code == 400
    assert "Nothing was saved. Please correct the marked fields." in html
    assert field_error(html, "number") == "Number: 100 is a number of user 100 (Anna Berg)."
    assert field_error(html, "members") == "Members: 999 is not a user."
    assert "“soon” is not a whole number of seconds from 5 to 300." in field_error(html, "ring_seconds")
    assert 'id="members" name="members" rows="4" aria-invalid="true" aria-describedby="error-members"' in html
    assert ">200\n999</textarea>" in html
    assert 'value="soon"' in html
    assert dict(groups.lab.store.items("groups")) == before == {}


def test_problems_are_shown_in_german(groups: Groups) -> None:
    """A German browser gets the German messages."""
    code, _, html = post(admin(groups, "de"), "/admin/groups/new", {**FORM, "members": "999"})
    assert code == 400
    assert "Nichts wurde gespeichert." in html
    assert field_error(html, "members") == "Mitglieder: 999 ist kein Benutzer."


def test_a_number_of_another_group_is_refused(groups: Groups) -> None:
    """Two groups never share a number."""
    groups.directory.put_group(Group("support", "600", ("100",)))
    code, _, html = post(admin(groups), "/admin/groups/new", FORM)
    assert code == 400
    assert field_error(html, "number") == "Number: 600 is the number of group support already."
    assert groups.directory.group("sales") is None


def test_admin_reorders_members_and_changes_strategy_and_overflow(groups: Groups) -> None:
    """Editing stores the new order, strategy, ring time and overflow; the name stays."""
    groups.directory.put_group(Group("sales", "600", ("100", "200")))
    edit = {
        **FORM,
        "name": "renamed",
        "members": "200\n100",
        "strategy": "cyclic",
        "ring_seconds": "12",
        "overflow": "number",
        "overflow_number": "+49301234567",
    }
    code, location, _ = post(admin(groups), "/admin/groups/sales", edit)
    assert (code, location) == (303, "/admin/groups/sales?done=saved")
    assert groups.directory.groups() == [Group("sales", "600", ("200", "100"), "cyclic", 12, "+49301234567")]


def test_a_member_is_removed_by_deleting_its_line(groups: Groups) -> None:
    """The member list is the text: a line gone is a member gone."""
    groups.directory.put_group(Group("sales", "600", ("100", "200")))
    post(admin(groups), "/admin/groups/sales", {**FORM, "members": "200"})
    group = groups.directory.group("sales")
    assert group is not None and group.members == ("200",)


def test_a_refused_edit_keeps_the_stored_group(groups: Groups) -> None:
    """A bad edit changes nothing, not even the fields that were fine."""
    stored = groups.directory.put_group(Group("sales", "600", ("100",), "hunt", 30, "busy"))
    code, _, _ = post(admin(groups), "/admin/groups/sales", {**FORM, "members": "200\n200"})
    assert code == 400
    assert groups.directory.group("sales") == stored


def test_renumbering_carries_the_group_forwards_and_their_schedules(groups: Groups) -> None:
    """The group's forwards belong to the group: they move to its new number, in one change."""
    groups.directory.put_group(Group("sales", "600", ("100",)))
    groups.forwards.set("600", Forward("unconditional", "300"))
    groups.schedules.set("600", "unconditional", "all", {"holidays": ["2026-12-24"]})
    groups.forwards.set("601", Forward("busy", "999"))  # left behind by someone else
    changes: list[Change] = []
    groups.lab.store.subscribe(changes.append)
    post(admin(groups), "/admin/groups/sales", {**FORM, "number": "601"})
    assert groups.directory.group_by_number("601") is not None
    assert groups.forwards.of("601") == [Forward("unconditional", "300")]
    assert groups.forwards.of("600") == []
    assert list(groups.schedules.of("601")) == ["unconditional/all"]
    assert groups.schedules.of("600") == {}
    assert {(c.namespace, c.key) for c in changes if c.namespace != "sessions"} == {
        ("groups", "sales"),
        ("forwards", "600"),
        ("forwards", "601"),
        ("forward_schedules", "600"),
        ("forward_schedules", "601"),
    }


def test_deleting_a_group_removes_it_and_its_forwards(groups: Groups) -> None:
    """A later user on the old number does not inherit the group's forwards."""
    groups.directory.put_group(Group("sales", "600", ("100",)))
    groups.forwards.set("600", Forward("unconditional", "300"))
    code, location, _ = post(admin(groups), "/admin/groups/sales/delete", {})
    assert (code, location) == (303, "/admin/groups?deleted=1")
    assert groups.directory.groups() == []
    assert groups.forwards.of("600") == []
    assert "Group deleted." in admin(groups).get(location).text


def test_the_list_shows_each_members_state_now(groups: Groups) -> None:
    """Logged in, busy, do not disturb, logged out, as the PBX model has them right now."""
    for extension, name in (("201", "Cleo"), ("202", "Dan"), ("203", "Eve")):
        groups.directory.put_user(User(extension, name))
    groups.directory.put_user(User("204", "Finn", groups=("sales",)))
    groups.directory.put_group(Group("sales", "600", ("200", "201", "202", "203", "100")))
    contact = [
        {"ObjectName": e, "Uri": f"sip:{e}@127.0.0.1:5070", "Status": "Reachable"}
        for e in "200 201 202".split()
    ]
    groups.pbx.resync(
        [{"Device": "PJSIP/200", "State": "NOT_INUSE"}, {"Device": "PJSIP/201", "State": "INUSE"}],
        contact,
        [],
        [{"Presentity": "CustomPresence:202", "Status": "dnd"}],
    )
    html = admin(groups).get("/admin/groups").text
    shown = '<span class="number">200</span> <span class="name">Ben Cole</span>: '
    shown += '<span class="state">logged in</span>'
    assert member_item(html, "sales", "200") == shown
    assert "busy" in member_item(html, "sales", "201")
    assert "do not disturb" in member_item(html, "sales", "202")
    assert "logged out" in member_item(html, "sales", "203")
    assert "also rung (they name the group in their user record)" in member_item(html, "sales", "204")
    order = [m.group(1) for m in re.finditer(r'<li id="member-sales-(\d+)"', html)]
    assert order == ["200", "201", "202", "203", "100", "204"]


def test_states_change_with_the_pbx(groups: Groups) -> None:
    """The list is read at each request: a phone that logs in shows so on the next load."""
    groups.directory.put_group(Group("sales", "600", ("200",)))
    groups.pbx.resync([], [], [])
    browser = admin(groups)
    assert "logged out" in member_item(browser.get("/admin/groups").text, "sales", "200")
    groups.pbx.resync([], [{"ObjectName": "200", "Uri": "sip:200@127.0.0.1:5070", "Status": "Reachable"}], [])
    assert "logged in" in member_item(browser.get("/admin/groups").text, "sales", "200")


def test_without_asterisk_the_state_is_unknown_not_logged_out(groups: Groups) -> None:
    """Before the first sync with Asterisk the page does not claim anyone is logged out."""
    groups.directory.put_group(Group("sales", "600", ("200",)))
    assert "unknown (no link to Asterisk)" in member_item(
        admin(groups).get("/admin/groups").text, "sales", "200"
    )


def test_a_member_who_is_no_longer_a_user_is_flagged(groups: Groups) -> None:
    """A user deleted after the group was saved shows as "not a user"."""
    groups.directory.put_group(Group("sales", "600", ("200", "100")))
    groups.directory.delete_user("100")
    assert "not a user" in member_item(admin(groups).get("/admin/groups").text, "sales", "100")


def test_names_and_typed_values_are_escaped(groups: Groups) -> None:
    """A user's name and anything typed into the form are shown as text, never as markup."""
    groups.directory.put_user(User("201", SCRIPT))
    groups.directory.put_group(Group("sales", "600", ("201",)))
    listing = admin(groups).get("/admin/groups").text
    assert SCRIPT not in listing and "&lt;script&gt;" in listing
    code, _, html = post(admin(groups), "/admin/groups/new", {**FORM, "name": SCRIPT, "members": SCRIPT})
    assert code == 400
    assert SCRIPT not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;</textarea>" in html


def test_group_forwards_are_set_and_removed_on_the_group_page(groups: Groups) -> None:
    """The group's page edits forwards of the group's number through the forwarding API."""
    groups.directory.put_group(Group("sales", "600", ("100",)))
    browser = admin(groups)
    fields = {"kind": "noanswer", "scope": "external", "target": "300", "seconds": "15"}
    code, location, _ = post(browser, "/admin/groups/sales/forwards", fields)
    assert (code, location) == (303, "/admin/groups/sales?done=forward_saved")
    assert groups.forwards.of("600") == [Forward("noanswer", "300", "external", 15)]
    page = browser.get(location).text
    assert "Forward saved." in page and 'id="forward-noanswer-external"' in page
    assert "When not answered, External calls" in browser.get("/admin/groups").text
    code, location, _ = post(
        browser, "/admin/groups/sales/forwards/remove", {"kind": "noanswer", "scope": "external"}
    )
    assert (code, location) == (303, "/admin/groups/sales?done=forward_removed")
    assert groups.forwards.of("600") == []


def test_a_bad_group_forward_is_refused_with_the_reason(groups: Groups) -> None:
    """A forward to the group's own number, or without a number, is shown and not stored."""
    groups.directory.put_group(Group("sales", "600", ("100",)))
    browser = admin(groups)
    code, _, html = post(
        browser, "/admin/groups/sales/forwards", {"kind": "busy", "scope": "all", "target": "600"}
    )
    assert code == 400
    assert "a line cannot forward to itself" in html
    code, _, html = post(
        browser,
        "/admin/groups/sales/forwards",
        {"kind": "noanswer", "scope": "all", "target": "300", "seconds": "x"},
    )
    assert code == 400
    assert "Ring first: please enter a whole number of seconds." in html
    code, _, _ = post(browser, "/admin/groups/sales/forwards/remove", {"kind": "later", "scope": "all"})
    assert code == 400
    assert groups.forwards.of("600") == []


@pytest.mark.parametrize("path", ["/admin/groups", "/admin/groups/new", "/admin/groups/sales"])
def test_group_pages_are_for_the_admin_only(groups: Groups, path: str) -> None:
    """A user gets 403 on every group page."""
    groups.directory.put_group(Group("sales", "600", ("100",)))
    anna = groups.lab.browser()
    assert anna.login("100", "anna-secret").code == 303
    assert anna.get(path).code == 403


def test_group_changes_need_the_admin_and_the_csrf_token(groups: Groups) -> None:
    """Without the token, or as a user, nothing is created, changed or deleted."""
    stored = groups.directory.put_group(Group("sales", "600", ("100",)))
    anna = groups.lab.browser()
    anna.login("100", "anna-secret")
    token = anna.csrf("/me/profile")
    assert anna.post("/admin/groups/new", {**FORM, "name": "x", "number": "601", "csrf": token}).code == 403
    assert anna.post("/admin/groups/sales/delete", {"csrf": token}).code == 403
    browser = admin(groups)
    assert browser.post("/admin/groups/sales", {**FORM, "members": "200"}).code == 403
    assert browser.post("/admin/groups/sales/delete", {}).code == 403
    assert (
        browser.post("/admin/groups/sales/forwards", {"kind": "busy", "scope": "all", "target": "300"}).code
        == 403
    )
    assert groups.directory.groups() == [stored]
    assert groups.forwards.of("600") == []


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/admin/groups/nope", None),
        ("/admin/groups/nope", FORM),
        ("/admin/groups/nope/delete", {}),
        ("/admin/groups/nope/forwards", {"kind": "busy", "scope": "all", "target": "300"}),
        ("/admin/groups/nope/forwards/remove", {"kind": "busy", "scope": "all"}),
    ],
)
def test_an_unknown_group_is_404(groups: Groups, path: str, fields: dict[str, str] | None) -> None:
    """No page creates a group or forward behind a mistyped name."""
    browser = admin(groups)
    reply = (
        browser.get(path)
        if fields is None
        else browser.post(path, {"csrf": browser.csrf("/admin/groups"), **fields})
    )
    assert reply.code == 404
    assert groups.directory.groups() == [] and groups.forwards.all() == {}


def test_the_admin_navigation_lists_groups_after_users(groups: Groups) -> None:
    """Groups have their own entry, right after the user directory."""
    html = admin(groups).get("/admin/groups").text
    nav = re.findall(r'<a href="(/admin/[a-z]+)"', html.split("</nav>")[0])
    assert nav[nav.index("/admin/users") + 1] == "/admin/groups"
    assert '<a href="/admin/groups" aria-current="page">Groups</a>' in html


def test_office_closed_schedule_on_a_group_forward(groups: Groups) -> None:
    """The admin gives the group's unconditional forward a schedule on the group's
    schedule page ("office closed": evenings); a user cannot reach that page."""
    from appliance.web.pages.schedules import SchedulePages
    from tests.unit.test_web_features import upload

    groups.lab.web.add(SchedulePages(groups.forwards, groups.schedules, groups.directory))
    groups.directory.put_group(Group("sales", "600", ("200",)))
    groups.forwards.set("600", Forward("unconditional", "+4930999"))
    browser = admin(groups)
    assert 'href="/admin/groups/sales/schedules"' in browser.get("/admin/groups/sales").text
    page = browser.get("/admin/groups/sales/schedules")
    assert page.code == 200 and "When the forwards of group sales apply" in page.text
    assert 'action="/admin/groups/sales/schedules"' in page.text
    fields = {
        "forward": "unconditional/all",
        "days": "mon",
        "start": "18:00",
        "end": "24:00",
        "on_holidays": "active",
    }
    reply = upload(
        browser,
        "/admin/groups/sales/schedules",
        {"csrf": browser.csrf("/admin/groups"), **fields},
        "none.ics",
        b"",
    )
    assert (reply.code, reply.header("location")) == (303, "/admin/groups/sales/schedules?done=saved"), (
        reply.text[-3000:]
    )
    [window] = groups.schedules.of("600")["unconditional/all"].windows
    assert window.to_json() == {"days": ["mon"], "start": "18:00", "end": "24:00"}
    nothing = {"forward": "busy/all", "days": "mon", "start": "18:00", "end": "24:00"}
    refused = upload(
        browser,
        "/admin/groups/sales/schedules",
        {"csrf": browser.csrf("/admin/groups"), **nothing},
        "none.ics",
        b"",
    )
    assert refused.code == 400 and "Set a forward first" in refused.text
    assert browser.get("/admin/groups/nope/schedules").code == 404
    removed = browser.post(
        "/admin/groups/sales/schedules/remove",
        {"csrf": browser.csrf("/admin/groups"), "forward": "unconditional/all"},
    )
    assert removed.code == 303 and groups.schedules.of("600") == {}
    anna = groups.lab.browser()
    assert anna.login("100", "anna-secret").code == 303
    assert anna.get("/admin/groups/sales/schedules").code in (403, 404)


def test_office_closed_forward_to_an_announcement_on_the_group_page(groups: Groups) -> None:
    """The admin chooses an announcement instead of a number: it is stored as the
    group's forward, listed by its name (German and English), and offered selected
    again; a number and an announcement at once are refused, nothing stored."""
    from appliance.web.pages.schedules import SchedulePages

    groups.lab.web.add(SchedulePages(groups.forwards, groups.schedules, groups.directory))
    groups.directory.put_group(Group("sales", "600", ("100",)))
    browser = admin(groups)
    both = {"kind": "unconditional", "scope": "all", "target": "300", "announcement": "closed"}
    code, _, html = post(browser, "/admin/groups/sales/forwards", both)
    assert code == 400
    assert "please enter a number or choose an announcement, not both" in html
    assert groups.forwards.of("600") == []
    code, _, html = post(
        browser, "/admin/groups/sales/forwards", {**both, "target": "", "announcement": "nope"}
    )
    assert code == 400 and "&#39;announcement:nope&#39; is not an announcement" in html
    code, location, _ = post(browser, "/admin/groups/sales/forwards", {**both, "target": ""})
    assert (code, location) == (303, "/admin/groups/sales?done=forward_saved")
    assert groups.forwards.of("600") == [Forward("unconditional", "announcement:closed")]
    page = browser.get(location).text
    assert "Announcement: Outside business hours" in page
    assert '<option value="closed" selected>' not in page  # the form is for a new forward
    assert "Ansage: Außerhalb der Geschäftszeiten" in admin(groups, "de").get("/admin/groups/sales").text
    schedules = browser.get("/admin/groups/sales/schedules").text
    assert "Announcement: Outside business hours" in schedules


def test_group_list_pages(groups: Groups) -> None:
    """250 groups: 100 a page in name order, each with its members' states and forwards,
    a link to the next page, and on later pages one back to the first; together they
    list every group once."""
    for i in range(250):
        groups.directory.put_group(Group(f"g{i:03d}", str(5000 + i), ("100",)))
    groups.forwards.set("5249", Forward("unconditional", "300"))
    browser = admin(groups)
    shown: list[str] = []
    url: str | None = "/admin/groups"
    pages = 0
    while url is not None:
        text = browser.get(url).text
        rows = re.findall(r'<tr id="group-([^"]+)">', text)
        assert 0 < len(rows) <= 100 and rows == sorted(rows), url
        assert all(f'id="member-{name}-100"' in text for name in rows), url
        shown += rows
        pages += 1
        assert (pages > 1) == ('<a href="/admin/groups">' in text), url
        found = re.search(r'<a rel="next" href="([^"]+)"', text)
        url = found.group(1).replace("&amp;", "&") if found else None
    assert shown == [group.name for group in groups.directory.groups()] and pages == 3
    last_row = text[text.index('<tr id="group-g249">') :]
    assert '→ <span class="number">300</span>' in last_row[: last_row.index("</tr>")]
