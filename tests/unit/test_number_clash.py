"""One number, one destination: a user's extension, further number or device is never a
group's number, nor are two groups' numbers the same.  One rule in the directory
(`Directory.user_number_clash`, `Directory.group_number_clash`), obeyed by every
write and shown beside its field by the user form, the CSV import, the group form;
the endpoint sync skips such an endpoint."""

from __future__ import annotations

import re

import pytest
from twisted.internet.task import Clock

from appliance.directory import Directory, Group, NumberClashError, User
from appliance.slices import SLICE_PAUSE, reactor_cooperator
from appliance.testing import MemoryStore
from appliance.web.groupform import parse_group_form
from tests.unit.test_pbxusers import Rig
from tests.unit.test_usercsv import upload
from tests.unit.test_web import make_lab
from tests.unit.test_web_groups import FORM, Groups, admin, field_error, make_groups, post


@pytest.fixture
def groups() -> Groups:
    return make_groups()


@pytest.fixture
def directory() -> Directory:
    directory = Directory(MemoryStore())
    directory.put_user(User("200", "Anna Berg", numbers=("+49301234200", "250"), devices=("200-soft",)))
    directory.put_group(Group("sales", "600", ("200",)))
    return directory


@pytest.mark.parametrize(
    ("user", "field", "english", "german"),
    [
        (
            User("600", "Eve"),
            "extension",
            "Extension: 600 is the number of group sales.",
            "Rufnummer: 600 ist die Rufnummer der Gruppe sales.",
        ),
        (
            User("201", "Ben", numbers=("+4930999", "600")),
            "numbers",
            "Further numbers: 600 is the number of group sales.",
            "Weitere Rufnummern: 600 ist die Rufnummer der Gruppe sales.",
        ),
        (
            User("201", "Ben", devices=("600",)),
            "devices",
            "Further devices: 600 is the number of group sales.",
            "Weitere Geräte: 600 ist die Rufnummer der Gruppe sales.",
        ),
    ],
)
def test_a_user_may_not_take_a_groups_number(
    directory: Directory, user: User, field: str, english: str, german: str
) -> None:
    """Extension, further number or device equal to a group's number: the clash names the
    field in both languages, and every user write refuses it, storing nothing."""
    clash = directory.user_number_clash([user])
    assert clash is not None
    assert (clash.who, clash.field, clash.text.en, clash.text.de) == (user.extension, field, english, german)
    with pytest.raises(NumberClashError, match=re.escape(f"{user.extension}: {english}")):
        directory.put_user(user)
    with pytest.raises(NumberClashError):
        directory.put_users([User("202", "Good"), user])
    with pytest.raises(NumberClashError):
        directory.put_users_in_slices([User("202", "Good"), user], reactor_cooperator(Clock()))
    assert [u.extension for u in directory.users()] == ["200"]


def test_every_clashing_field_is_named_at_once(directory: Directory) -> None:
    """Extension and devices both on group numbers: one clash per field, in form order."""
    directory.put_group(Group("ops", "601"))
    clashes = directory.user_number_clashes(
        [User("600", "Eve", numbers=("+4930999",), devices=("601", "600"))]
    )
    assert [(c.field, c.text.en) for c in clashes] == [
        ("extension", "Extension: 600 is the number of group sales."),
        ("devices", "Further devices: 601 is the number of group ops."),
    ]


def test_a_clash_stored_before_the_rule_does_not_block_other_changes() -> None:
    """Only what a write adds is checked: a user stored with a group's number (before the
    rule) can still change their name; adding a new clashing number is refused."""
    store = MemoryStore()
    store.put("groups", "sales", {"name": "sales", "number": "600", "members": []})
    store.put("groups", "ops", {"name": "ops", "number": "601", "members": []})
    store.put("users", "201", {"extension": "201", "name": "Ben", "numbers": ["600"]})
    directory = Directory(store)
    assert directory.put_user(User("201", "Ben Cole", numbers=("600",))).name == "Ben Cole"
    with pytest.raises(NumberClashError, match="Further devices: 601 is the number of group ops"):
        directory.put_user(User("201", "Ben Cole", numbers=("600",), devices=("601",)))
    store.put("groups", "sales", {"name": "sales", "number": "600", "members": ["201"]})
    assert directory.put_group(Group("sales", "600", ("201",), "hunt")).strategy == "hunt"


@pytest.mark.parametrize(
    ("number", "english", "german"),
    [
        ("200", "Number: 200 is a number of user 200 (Anna Berg).", "Benutzer 200 (Anna Berg)"),
        ("250", "Number: 250 is a number of user 200 (Anna Berg).", "Rufnummer von Benutzer 200"),
        ("600", "Number: 600 is the number of group sales already.", "schon die Rufnummer der Gruppe sales"),
    ],
)
def test_a_group_may_not_take_a_users_or_another_groups_number(
    directory: Directory, number: str, english: str, german: str
) -> None:
    """A new or renumbered group on a user's extension or further number, or on another
    group's number, is refused by the directory itself; its stored number stays."""
    directory.put_group(Group("support", "610"))
    for group in (Group("new", number), Group("support", number)):
        clash = directory.group_number_clash(group)
        assert clash is not None
        assert (clash.who, clash.field, clash.text.en) == (group.name, "number", english)
        assert german in clash.text.de
        with pytest.raises(NumberClashError, match=re.escape(english)):
            directory.put_group(group)
    assert directory.group("new") is None and directory.group("support") == Group("support", "610")


def test_a_group_keeps_its_own_number_and_a_freed_number_is_free(directory: Directory) -> None:
    """Saving a group under its own number passes; once the group is renumbered or
    deleted, its old number can be a user's."""
    assert directory.group_number_clash(Group("sales", "600", (), "hunt")) is None
    directory.put_group(Group("sales", "601", ("200",)))
    assert directory.put_user(User("600", "Eve")).extension == "600"
    with pytest.raises(NumberClashError, match="600 is a number of user 600"):
        directory.put_group(Group("sales", "600"))
    directory.delete_group("sales")
    assert directory.put_user(User("201", "Ben", numbers=("601",))).numbers == ("601",)


def test_the_group_form_uses_the_directory_rule(directory: Directory) -> None:
    """The group form's number problem is the directory's clash, device included."""
    form = {**FORM, "members": "200", "number": "200-soft"}
    assert "not 2 to 8 digits" in parse_group_form(form, directory, None).problems["number"].en
    directory.put_user(User("201", "Ben", devices=("601",)))
    refused = parse_group_form({**FORM, "name": "ops", "members": "200", "number": "601"}, directory, None)
    assert refused.group is None
    clash = directory.group_number_clash(Group("ops", "601"))
    assert clash is not None and refused.problems == {"number": clash.text}


def test_user_form_shows_the_clash_beside_its_field_in_german_and_english(groups: Groups) -> None:
    """Admin adds user 600 (group sales' number), then gives Ben 600 as a further number:
    each is refused beside its field, in the page's language; nothing is stored."""
    assert post(admin(groups), "/admin/groups/new", FORM)[0] == 303
    code, _, html = post(admin(groups), "/admin/users/new", {"extension": "600", "name": "Eve"})
    assert code == 400
    assert field_error(html, "extension") == "Extension: 600 is the number of group sales."
    assert 'id="extension" name="extension" value="600"' in html and 'aria-invalid="true"' in html
    german = admin(groups, "de")
    code, _, html = post(german, "/admin/users/200", {"name": "Ben Cole", "numbers": "+4930999 600"})
    assert code == 400
    assert field_error(html, "numbers") == "Weitere Rufnummern: 600 ist die Rufnummer der Gruppe sales."
    assert "Nichts wurde gespeichert." in html
    assert groups.directory.user("600") is None
    assert groups.directory.user("200") == User("200", "Ben Cole", "ben@example.com", "en")


def test_group_form_refuses_a_users_number_beside_its_field(groups: Groups) -> None:
    """The group page refuses user 200's extension as a new group's number (and as a new
    number of an existing group), in the page's language; nothing changes."""
    assert post(admin(groups), "/admin/groups/new", FORM)[0] == 303
    code, _, html = post(admin(groups, "de"), "/admin/groups/new", {**FORM, "name": "ops", "number": "200"})
    assert code == 400
    assert field_error(html, "number") == "Rufnummer: 200 ist eine Rufnummer von Benutzer 200 (Ben Cole)."
    code, _, html = post(admin(groups), "/admin/groups/sales", {**FORM, "number": "100"})
    assert code == 400
    assert field_error(html, "number") == "Number: 100 is a number of user 100 (Anna Berg)."
    assert [(g.name, g.number) for g in groups.directory.groups()] == [("sales", "600")]


def test_csv_import_names_the_line_whose_number_is_a_groups() -> None:
    """The import preview refuses a line whose extension is a group's number, with the
    reason in the page's language; nothing is stored."""
    lab = make_lab()
    lab.directory.put_group(Group("sales", "600"))
    admin = lab.browser(**{"Accept-Language": "de"})
    assert admin.login("admin", "admin-secret").code == 303
    text = "extension,name,numbers\n250,Good,\n251,Also good,\n600,Clash,\n"
    reply = upload(admin, "/admin/users/import", {"csrf": admin.csrf("/admin/users")}, "u.csv", text.encode())
    assert reply.code == 400
    assert re.findall(r'<td class="line">(\d+)</td>', reply.text) == ["4"]
    assert "Rufnummer: 600 ist die Rufnummer der Gruppe sales." in reply.text
    assert lab.directory.user("250") is None and lab.directory.user("600") is None


def test_endpoint_sync_makes_no_user_on_a_groups_number() -> None:
    """Asterisk has endpoints 200 and 600; group 600 exists: 200 becomes a user, 600 does
    not (logged), and a later sync still does not write it."""
    rig = Rig({"200": '"Anna" <200>', "600": '"Sales desk" <600>'})
    rig.directory.put_group(Group("sales", "600"))
    for _ in range(2):
        rig.ami.login()
        rig.clock.advance(SLICE_PAUSE + 1)
        assert [u.extension for u in rig.directory.users()] == ["200"]
    assert rig.sync.last is not None and rig.sync.last.create == ()
