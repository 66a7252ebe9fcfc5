"""The feature pages (forwards, callbacks, journal, notifications, contacts) through StubTreq.

Users 100 (Anna) and 200 (Ben) each have data of their own; every test of a
user page checks that Anna reaches only hers, whatever the form says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest
import treq
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from appliance.callback.engine import CallbackEngine, IRecallOutputs, Kind, Recall, Request
from appliance.callwaiting import CallWaiting
from appliance.contacts import Contact, ContactDirectory
from appliance.contactsync import ContactJobs
from appliance.directory import Group, User
from appliance.forwarding.records import Forward, Forwards
from appliance.missed.journal import Entry, Journal
from appliance.pbx import PBXModel, Presence
from appliance.settings import Settings
from appliance.testing import synchronous_cooperator
from appliance.web.pages.callbacks import CallbackPages
from appliance.web.pages.contacts import ContactPages
from appliance.web.pages.forwards import ForwardPages
from appliance.web.pages.journal import JournalPages, NotificationPages
from tests.unit.test_web import BASE, Browser, Lab, Reply, _wait, hidden, make_lab, stub_request

SCRIPT = "<script>alert(1)</script>"
VCARDS = """BEGIN:VCARD\r
VERSION:3.0\r
UID:acme-1\r
FN:Erika Muster\r
TEL:+49 30 123456\r
EMAIL:erika@example.com\r
END:VCARD\r
BEGIN:VCARD\r
VERSION:3.0\r
UID:acme-2\r
FN:Max Beispiel\r
TEL:0301234567\r
END:VCARD\r
"""


@implementer(IRecallOutputs)
@dataclass
class Outputs:
    """The engine's outputs, kept; every target is busy, so nothing is recalled."""

    originated: list[Recall] = field(default_factory=list)

    def originate(self, recall: Recall) -> None:
        self.originated.append(recall)

    def saved(self, request: Request) -> None:
        pass

    def removed(self, request: Request, why: str) -> None:
        pass


class EngineCallbacks:
    """`CallbackService`'s web API over a bare engine."""

    def __init__(self, engine: CallbackEngine) -> None:
        self.engine = engine
        self.calls: list[tuple[str, str]] = []
        self.modes: dict[str, str] = {}

    def pending(self, requester: str | None = None) -> list[Request]:
        return self.engine.pending(requester=requester)

    def cancel(self, request_id: str) -> bool:
        return self.engine.cancel_id(request_id)

    def request_now(self, requester: str, target: str) -> str:
        return self.engine.request(requester, target).value

    def notify_mode(self, user: str) -> str:
        return self.modes.get(user, "ring")

    def set_notify_mode(self, user: str, mode: str) -> None:
        self.modes[user] = mode

    def click_to_call(self, user: str, number: str) -> Deferred[Any]:
        self.calls.append((user, number))
        return succeed(None)


@dataclass
class Features:
    forwards: Forwards
    journal: Journal
    contacts: ContactDirectory
    engine: CallbackEngine
    callbacks: EngineCallbacks
    call_waiting: CallWaiting


def _no_hangup(channel: str, cause: int) -> Deferred[Any]:
    raise AssertionError("the web pages never hang up calls")


@pytest.fixture
def lab() -> Lab:
    """The web app as in ``test_web``: Anna (100, German) and Ben (200, English)."""
    return make_lab()


@pytest.fixture
def features(lab: Lab) -> Features:
    """The feature pages installed over real feature objects on the lab's store."""
    forwards = Forwards(lab.store)
    journal = Journal(lab.store)
    contacts = ContactDirectory(lab.store)
    engine = CallbackEngine(lab.clock, Outputs(), lambda _name: Presence.BUSY)
    lab.web.add(ForwardPages(forwards, lab.directory))
    call_waiting = CallWaiting(
        lab.store, Settings(lab.store), PBXModel(clock=lab.clock), lab.clock, _no_hangup
    )
    callbacks = EngineCallbacks(engine)
    lab.web.add(CallbackPages(callbacks, lab.directory, call_waiting))
    lab.web.add(JournalPages(journal, lab.directory))
    lab.web.add(NotificationPages(journal, lab.directory))
    lab.web.add(ContactPages(contacts, ContactJobs(contacts, synchronous_cooperator(), lab.clock)))
    return Features(forwards, journal, contacts, engine, callbacks, call_waiting)


def logged_in(lab: Lab, login: str, password: str) -> Browser:
    browser = lab.browser()
    assert browser.login(login, password).code == 303
    return browser


@pytest.fixture
def admin(lab: Lab, features: Features) -> Browser:
    return logged_in(lab, "admin", "admin-secret")


@pytest.fixture
def anna(lab: Lab, features: Features) -> Browser:
    return logged_in(lab, "100", "anna-secret")


def missed(journal: Journal, user: str, entry_id: str, when: float, name: str, number: str) -> None:
    entry = Entry(entry_id, when, number, name, number, 12.4)
    journal.store.apply(journal.additions({user: entry}))


def upload(browser: Browser, path: str, fields: dict[str, str], name: str, content: bytes) -> Reply:
    """A multipart POST, as a browser sends a file input (StubTreq has no ``files=``)."""
    boundary = "----appliance-test-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        for key, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: text/vcard\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    stub = StubTreq(browser.web.app.resource())
    headers = {
        **browser.headers,
        "Cookie": "; ".join(f"{key}={value}" for key, value in browser.cookies.items()),
        "Content-Type": f"multipart/form-data; boundary={boundary}",
    }
    response = _wait(
        stub, stub_request(stub, "POST", BASE + path, data=body, headers=headers, allow_redirects=False)
    )
    text = _wait(stub, treq.text_content(response, encoding="utf-8"))
    return Reply(response.code, response.headers, text)


# --- access: roles and CSRF ------------------------------------------------------

USER_POSTS = [
    "/me/forwards",
    "/me/forwards/remove",
    "/me/callbacks/cancel",
    "/me/journal/seen",
    "/me/notifications",
]
ADMIN_POSTS = [
    "/admin/forwards/200",
    "/admin/forwards/200/remove",
    "/admin/callbacks/cancel",
    "/admin/contacts",
]
ADMIN_PAGES = [
    "/admin/forwards",
    "/admin/forwards/200",
    "/admin/callbacks",
    "/admin/journal",
    "/admin/journal?user=200",
    "/admin/notifications",
    "/admin/contacts",
]


@pytest.mark.parametrize("path", USER_POSTS)
def test_user_forms_refuse_a_post_without_csrf(
    lab: Lab, features: Features, anna: Browser, path: str
) -> None:
    """Every new user form's POST without the token is 403 and changes nothing."""
    before = lab.store.items("forwards"), lab.store.items("journal"), lab.store.items("mail_optin")
    reply = anna.post(path, {"kind": "unconditional", "scope": "all", "target": "300", "all": "1"})
    assert reply.code == 403
    assert (lab.store.items("forwards"), lab.store.items("journal"), lab.store.items("mail_optin")) == before


@pytest.mark.parametrize("path", ADMIN_POSTS)
def test_admin_forms_refuse_a_post_without_csrf(
    lab: Lab, features: Features, admin: Browser, path: str
) -> None:
    """Every new admin form's POST without the token is 403 and changes nothing."""
    features.engine.request("200", "100")
    reply = admin.post(path, {"kind": "unconditional", "scope": "all", "target": "300", "id": "200:100"})
    assert reply.code == 403
    assert features.forwards.of("200") == []
    assert [r.id for r in features.engine.pending()] == ["200:100"]


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_new_admin_pages_refuse_a_user(features: Features, anna: Browser, path: str) -> None:
    """A user gets 403 on every new admin page, including one naming another user."""
    reply = anna.get(path)
    assert reply.code == 403
    assert "Ben Cole" not in reply.text


def test_admin_posts_refuse_a_user(lab: Lab, features: Features, anna: Browser) -> None:
    """A user with a valid token cannot use the admin forms on someone's forwards or callbacks."""
    features.engine.request("200", "300")
    token = anna.csrf("/me/forwards")
    forward = {"csrf": token, "kind": "unconditional", "scope": "all", "target": "300"}
    assert anna.post("/admin/forwards/200", forward).code == 403
    assert anna.post("/admin/callbacks/cancel", {"csrf": token, "id": "200:300"}).code == 403
    assert features.forwards.of("200") == []
    assert [r.id for r in features.engine.pending()] == ["200:300"]


def nav_links(html: str) -> list[str]:
    found = re.search(r"<nav>(.*?)</nav>", html, re.S)
    assert found, "no navigation"
    return re.findall(r'href="([^"]+)"', found.group(1))


def test_navigation_lists_the_feature_pages_in_order(anna: Browser, admin: Browser) -> None:
    """Users and the admin each see their pages, in the reserved order."""
    assert nav_links(anna.get("/me").text) == [
        "/me",
        "/me/forwards",
        "/me/callbacks",
        "/me/journal",
        "/me/notifications",
    ]
    assert nav_links(admin.get("/admin/settings").text) == [
        "/admin/settings",
        "/admin/users",
        "/admin/forwards",
        "/admin/callbacks",
        "/admin/journal",
        "/admin/notifications",
        "/admin/contacts",
    ]


# --- forwards --------------------------------------------------------------------


def test_user_sets_an_unconditional_forward(features: Features, anna: Browser) -> None:
    """The form stores the forward for the logged-in user and the page lists it."""
    token = anna.csrf("/me/forwards")
    reply = anna.post(
        "/me/forwards", {"csrf": token, "kind": "unconditional", "scope": "all", "target": "300"}
    )
    assert (reply.code, reply.header("location")) == (303, "/me/forwards?done=saved")
    assert features.forwards.of("100") == [Forward("unconditional", "300")]
    page = anna.get("/me/forwards?done=saved").text
    assert 'id="forward-unconditional-all"' in page and "Umleitung gespeichert." in page


def test_noanswer_forward_keeps_its_seconds(features: Features, anna: Browser) -> None:
    """A no-answer forward stores the ringing time the user entered."""
    token = anna.csrf("/me/forwards")
    form = {"csrf": token, "kind": "noanswer", "scope": "external", "target": "+4930123", "seconds": "15"}
    assert anna.post("/me/forwards", form).code == 303
    assert features.forwards.of("100") == [Forward("noanswer", "+4930123", "external", 15)]


@pytest.mark.parametrize(
    ("form", "message"),
    [
        (
            {"kind": "unconditional", "scope": "all", "target": "abc"},
            "target: &#39;abc&#39; is not a phone number",
        ),
        ({"kind": "unconditional", "scope": "all", "target": "100"}, "a line cannot forward to itself"),
        (
            {"kind": "noanswer", "scope": "all", "target": "300", "seconds": "x"},
            "bitte eine ganze Zahl",
        ),
        ({"kind": "noanswer", "scope": "all", "target": "300", "seconds": "1"}, "seconds: 1 is not 2 to 300"),
        ({"kind": "sometimes", "scope": "all", "target": "300"}, "kind: &#39;sometimes&#39; is not one of"),
    ],
)
def test_invalid_forward_is_refused_with_the_reason(
    features: Features, anna: Browser, form: dict[str, str], message: str
) -> None:
    """A forward `Forwards` refuses shows its reason, keeps the input, and stores nothing."""
    reply = anna.post("/me/forwards", {"csrf": anna.csrf("/me/forwards"), **form})
    assert reply.code == 400
    assert message in reply.text
    assert f'value="{form["target"]}"' in reply.text
    assert features.forwards.of("100") == []


def test_user_removes_a_forward(features: Features, anna: Browser) -> None:
    """Remove deletes exactly the forward of that kind and scope."""
    features.forwards.set("100", Forward("unconditional", "300"))
    features.forwards.set("100", Forward("busy", "301"))
    form = {"csrf": anna.csrf("/me/forwards"), "kind": "unconditional", "scope": "all"}
    assert anna.post("/me/forwards/remove", form).code == 303
    assert features.forwards.of("100") == [Forward("busy", "301")]


def test_user_sees_and_changes_only_own_forwards(features: Features, anna: Browser) -> None:
    """Anna's page never shows Ben's forward, and fields naming Ben change only Anna's."""
    features.forwards.set("200", Forward("unconditional", "399"))
    assert "399" not in anna.get("/me/forwards").text
    token = anna.csrf("/me/forwards")
    sneaky = {"csrf": token, "kind": "unconditional", "scope": "all", "extension": "200", "owner": "200"}
    assert anna.post("/me/forwards/remove", sneaky).code == 303
    assert anna.post("/me/forwards", {**sneaky, "target": "300"}).code == 303
    assert features.forwards.of("200") == [Forward("unconditional", "399")]
    assert features.forwards.of("100") == [Forward("unconditional", "300")]
    assert anna.get("/me/forwards/200").code == 404


def test_admin_edits_any_users_forwards(features: Features, admin: Browser) -> None:
    """The admin lists everyone's forwards and sets one for Ben."""
    features.forwards.set("100", Forward("busy", "301"))
    overview = admin.get("/admin/forwards").text
    assert 'href="/admin/forwards/200"' in overview and "301" in overview
    token = admin.csrf("/admin/forwards/200")
    form = {"csrf": token, "kind": "unconditional", "scope": "internal", "target": "300"}
    reply = admin.post("/admin/forwards/200", form)
    assert reply.header("location") == "/admin/forwards/200?done=saved"
    assert features.forwards.of("200") == [Forward("unconditional", "300", "internal")]
    assert admin.get("/admin/forwards/999").code == 404


# --- callbacks -------------------------------------------------------------------


def test_user_sees_only_own_callback_requests(lab: Lab, features: Features, anna: Browser) -> None:
    """Anna's list holds her request, not Ben's."""
    features.engine.request("100", "200")
    lab.clock.advance(5)
    features.engine.request("200", "300", Kind.CCNR)
    page = anna.get("/me/callbacks").text
    assert 'id="callback-100-200"' in page and "Ben Cole" in page
    assert "callback-200-300" not in page


def test_group_request_shows_the_group_on_the_callback_page(
    lab: Lab, features: Features, anna: Browser
) -> None:
    """A request for a group's number is listed by the group's name, escaped, with cancel."""
    lab.directory.put_group(Group("Vertrieb", "650", ("200",)))
    features.engine.request("100", "650")
    page = anna.get("/me/callbacks").text
    row = page[page.index('id="callback-100-650"') :]
    assert '<span class="number">650</span> <span class="name">Vertrieb</span>' in row[: row.index("</tr>")]
    assert 'value="100:650"' in row[: row.index("</tr>")]


def test_user_cancels_own_callback_request(features: Features, anna: Browser) -> None:
    """Cancel removes the user's own request from the engine."""
    features.engine.request("100", "200")
    reply = anna.post("/me/callbacks/cancel", {"csrf": anna.csrf("/me/callbacks"), "id": "100:200"})
    assert (reply.code, reply.header("location")) == (303, "/me/callbacks?cancelled=1")
    assert features.engine.pending() == []


def test_user_cannot_cancel_another_users_request(features: Features, anna: Browser) -> None:
    """Ben's request id in Anna's form is 404 and Ben's request stays."""
    features.engine.request("200", "100")
    reply = anna.post("/me/callbacks/cancel", {"csrf": anna.csrf("/me/callbacks"), "id": "200:100"})
    assert reply.code == 404
    assert [r.id for r in features.engine.pending()] == ["200:100"]


def test_admin_sees_and_cancels_every_request(features: Features, admin: Browser) -> None:
    """The admin page lists all requests, and cancel removes the chosen one."""
    features.engine.request("100", "200")
    features.engine.request("200", "100")
    page = admin.get("/admin/callbacks").text
    assert "callback-100-200" in page and "callback-200-100" in page
    reply = admin.post("/admin/callbacks/cancel", {"csrf": admin.csrf("/admin/callbacks"), "id": "200:100"})
    assert reply.code == 303
    assert [r.id for r in features.engine.pending()] == ["100:200"]
    assert (
        admin.post("/admin/callbacks/cancel", {"csrf": admin.csrf("/admin/callbacks"), "id": "x"}).code == 404
    )


def test_user_requests_a_callback_for_herself_only(features: Features, anna: Browser) -> None:
    """The request form books a callback for the logged-in user, whatever else the form says."""
    token = anna.csrf("/me/callbacks")
    reply = anna.post("/me/callbacks/request", {"csrf": token, "number": "200", "requester": "300"})
    assert reply.header("location") == "/me/callbacks?requested=accepted"
    assert [r.id for r in features.engine.pending()] == ["100:200"]
    assert "Rückruf angefordert." in anna.get("/me/callbacks?requested=accepted").text
    bad = anna.post("/me/callbacks/request", {"csrf": token, "number": "20<0"})
    assert bad.header("location") == "/me/callbacks?requested=invalid"
    assert [r.id for r in features.engine.pending()] == ["100:200"]


def test_click_to_call_for_the_logged_in_user(features: Features, anna: Browser) -> None:
    """The call form starts a call from Anna's own line; a malformed number starts nothing."""
    token = anna.csrf("/me/callbacks")
    reply = anna.post("/me/call", {"csrf": token, "number": "201"})
    assert reply.header("location") == "/me/callbacks?called=ringing"
    bad = anna.post("/me/call", {"csrf": token, "number": "201,PJSIP/999"})
    assert bad.header("location") == "/me/callbacks?called=failed"
    assert features.callbacks.calls == [("100", "201")]
    assert anna.post("/me/call", {"number": "201"}).code == 403  # no CSRF token


def test_user_chooses_mail_instead_of_ring(features: Features, anna: Browser) -> None:
    """Anna chooses "send me a mail"; an unknown mode is refused and changes nothing."""
    token = anna.csrf("/me/callbacks")
    assert anna.post("/me/callbacks/notify", {"csrf": token, "notify": "mail"}).code == 303
    assert features.callbacks.modes == {"100": "mail"}
    assert anna.post("/me/callbacks/notify", {"csrf": token, "notify": "fax"}).code == 400
    assert features.callbacks.modes == {"100": "mail"}
    assert 'value="mail" selected' in anna.get("/me/callbacks").text


def test_call_waiting_by_user_and_admin(features: Features, anna: Browser, admin: Browser) -> None:
    """Anna switches her own call waiting; the admin switches Ben's; bad choices change nothing."""
    reply = anna.post("/me/callwaiting", {"csrf": anna.csrf("/me/callbacks"), "call_waiting": "on"})
    assert reply.header("location") == "/me/callbacks?call_waiting=saved"
    assert features.call_waiting.choice("100") is True
    assert anna.post("/me/callwaiting", {"csrf": anna.csrf("/me/callbacks"), "call_waiting": "x"}).code == 400
    assert features.call_waiting.choice("100") is True
    assert anna.post("/admin/callwaiting", {"csrf": anna.csrf("/me/callbacks"), "line": "200"}).code == 403
    form = {"csrf": admin.csrf("/admin/callbacks"), "line": "200", "call_waiting": "off"}
    assert admin.post("/admin/callwaiting", form).code == 303
    assert features.call_waiting.choice("200") is False
    assert admin.post("/admin/callwaiting", {**form, "line": "999"}).code == 404
    page = admin.get("/admin/callbacks").text
    assert 'id="call-waiting-200"' in page


# --- journal and notifications ---------------------------------------------------------


def test_journal_lists_newest_first_with_names_escaped(lab: Lab, features: Features, anna: Browser) -> None:
    """Entries appear newest first; a caller name with markup is escaped text."""
    missed(features.journal, "100", "a", 1_800_000_000, "Old Caller", "0301")
    missed(features.journal, "100", "b", 1_800_000_100, SCRIPT, "0302")
    page = anna.get("/me/journal").text
    assert page.index("0302") < page.index("0301")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert SCRIPT not in page


def test_journal_offers_a_call_back_for_dialable_numbers(features: Features, anna: Browser) -> None:
    """Each missed call from a dialable number has a "call" button (click to call);
    a withheld or non-numeric one has none."""
    missed(features.journal, "100", "a", 1_800_000_000, "Erika", "0301234")
    missed(features.journal, "100", "b", 1_800_000_100, "Nobody", "")
    missed(features.journal, "100", "c", 1_800_000_200, "Odd", "+49301")
    page = anna.get("/me/journal").text
    assert page.count('class="call-back"') == 1
    assert '<input type="hidden" name="number" value="0301234">' in page


def test_user_sees_only_own_journal(features: Features, anna: Browser) -> None:
    """Ben's missed call never shows on Anna's journal."""
    missed(features.journal, "200", "x", 1_800_000_000, "Secret Caller", "0309")
    page = anna.get("/me/journal").text
    assert "Secret Caller" not in page and "Keine verpassten Anrufe." in page


def test_mark_seen_changes_only_own_entries(features: Features, anna: Browser) -> None:
    """Anna marks her entry seen; Ben's entry id in her form changes nothing of his."""
    missed(features.journal, "100", "same", 1_800_000_000, "A", "0301")
    missed(features.journal, "200", "same", 1_800_000_000, "B", "0302")
    missed(features.journal, "200", "bens", 1_800_000_001, "B", "0302")
    token = anna.csrf("/me/journal")
    assert anna.post("/me/journal/seen", {"csrf": token, "id": "same"}).code == 303
    assert anna.post("/me/journal/seen", {"csrf": token, "id": "bens"}).code == 303
    assert [e.seen for e in features.journal.entries("100")] == [True]
    assert features.journal.unseen("200") == 2


def test_mark_all_seen(features: Features, anna: Browser) -> None:
    """ "Mark all seen" clears the user's unseen count."""
    missed(features.journal, "100", "a", 1_800_000_000, "A", "0301")
    missed(features.journal, "100", "b", 1_800_000_001, "B", "0302")
    assert anna.post("/me/journal/seen", {"csrf": anna.csrf("/me/journal"), "all": "1"}).code == 303
    assert features.journal.unseen("100") == 0


def test_admin_views_the_journal_of_a_chosen_user(features: Features, admin: Browser) -> None:
    """The admin chooses Ben and sees Ben's entries; an unknown user is 404."""
    missed(features.journal, "200", "x", 1_800_000_000, "Caller For Ben", "0309")
    missed(features.journal, "100", "y", 1_800_000_000, "Caller For Anna", "0301")
    page = admin.get("/admin/journal?user=200").text
    assert "Caller For Ben" in page and "Caller For Anna" not in page
    assert 'name="user" inputmode="numeric" size="10" required value="200"' in page
    assert admin.get("/admin/journal?user=999").code == 404


def test_user_opts_out_and_in(features: Features, anna: Browser) -> None:
    """An unticked box opts out, a ticked one in; only for the logged-in user."""
    token = anna.csrf("/me/notifications")
    assert anna.post("/me/notifications", {"csrf": token, "user": "200"}).code == 303
    assert (features.journal.opted_in("100"), features.journal.opted_in("200")) == (False, True)
    assert 'name="opt_in" value="1">' in anna.get("/me/notifications").text
    assert anna.post("/me/notifications", {"csrf": token, "opt_in": "1"}).code == 303
    assert features.journal.opted_in("100") is True


def test_admin_sees_who_wants_mail(features: Features, admin: Browser) -> None:
    """The admin's notification page shows each user's opt-in."""
    features.journal.set_opt_in("200", False)
    page = admin.get("/admin/notifications").text
    assert '<tr id="user-200">' in page
    row = page[page.index('<tr id="user-200">') :]
    assert "<td>no</td>" in row[: row.index("</tr>")]


# --- contacts --------------------------------------------------------------------


def test_admin_imports_a_vcf_file(features: Features, admin: Browser) -> None:
    """A multipart upload with the token imports every card and says how many."""
    token = admin.csrf("/admin/contacts")
    reply = upload(admin, "/admin/contacts", {"csrf": token}, "team.vcf", VCARDS.encode())
    assert (reply.code, reply.header("location")) == (303, "/admin/contacts?imported=2")
    assert sorted(c.name for c in features.contacts.contacts()) == ["Erika Muster", "Max Beispiel"]
    page = admin.get("/admin/contacts?imported=2").text
    assert "2 contacts imported." in page and "Contacts stored: 2" in page


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Broken\r\n", "not a valid vCard file"),
        (b"\xff\xfe\x00garbage", "The file is not UTF-8 text."),
        (b"", "Please choose a .vcf file."),
        (b"hello\r\n", "Failed to parse line: hello"),
        (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n", "The file holds no vCard."),
    ],
)
def test_bad_vcf_file_shows_an_error_and_imports_nothing(
    features: Features, admin: Browser, content: bytes, message: str
) -> None:
    """A file that is no vCard is refused with a clear message and nothing is stored."""
    token = admin.csrf("/admin/contacts")
    reply = upload(admin, "/admin/contacts", {"csrf": token}, "bad.vcf", content)
    assert reply.code == 400
    assert "Nothing was imported:" in reply.text and message in reply.text
    assert features.contacts.contacts() == []


def test_contacts_page_pages_and_searches(features: Features, admin: Browser) -> None:
    """120 contacts: 50 a page sorted by name with a next link; search by word and by number."""
    features.contacts.put(Contact(f"u{i:03}", f"Person {i:03}", (f"030 77{i:03}",)) for i in range(120))
    first = admin.get("/admin/contacts").text
    assert "Contacts stored: 120" in first
    names = re.findall(r'<td class="name">([^<]+)</td>', first)
    assert names == [f"Person {i:03}" for i in range(50)]
    next_link = re.search(r'<a rel="next" href="([^"]+)"', first)
    assert next_link is not None
    second = admin.get(next_link.group(1).replace("&amp;", "&")).text
    assert re.findall(r'<td class="name">([^<]+)</td>', second)[0] == "Person 050"
    found = admin.get("/admin/contacts?q=%2B49+30+77042").text
    assert re.findall(r'<td class="name">([^<]+)</td>', found) == ["Person 042"]
    assert "No contact matches." in admin.get("/admin/contacts?q=nobody").text


def test_upload_without_csrf_is_refused(features: Features, admin: Browser) -> None:
    """The multipart form without the token is 403 and imports nothing."""
    reply = upload(admin, "/admin/contacts", {}, "team.vcf", VCARDS.encode())
    assert reply.code == 403
    assert features.contacts.contacts() == []


def test_pages_speak_german(features: Features, lab: Lab) -> None:
    """A German user gets the feature pages in German."""
    browser = lab.browser()
    browser.login("100", "anna-secret")
    assert "Meine Umleitungen" in browser.get("/me/forwards").text
    assert "Meine verpassten Anrufe" in browser.get("/me/journal").text


def test_navigation_marks_only_the_page_shown(anna: Browser) -> None:
    """On /me/forwards the Forwards link is current, not the /me profile link above it."""
    page = anna.get("/me/forwards").text
    assert re.findall(r'<a href="([^"]+)" aria-current="page">', page) == ["/me/forwards"]


def test_sync_now_starts_every_address_book_and_shows_the_result(lab: Lab) -> None:
    """ "Sync now" runs each source once; the page shows each job's last result."""
    from appliance.contactsync import ContactSources

    contacts = ContactDirectory(lab.store)
    jobs = ContactJobs(contacts, synchronous_cooperator(), lab.clock)
    runs: list[str] = []

    class Book:
        def __init__(self, name: str) -> None:
            self.name = name

        def sync(self) -> Any:
            runs.append(self.name)

            def steps() -> Any:
                yield from jobs.write_steps(
                    self.name, [Contact(f"{self.name}:1", f"From {self.name}", ("0301",))]
                )
                return 1

            return jobs.run(self.name, steps(), lambda count: f"{count} contacts from {self.name}")

    sources = ContactSources({"carddav": Book("carddav"), "ldap": Book("ldap")}, lab.clock, 60)
    lab.web.add(ContactPages(contacts, jobs, sources))
    admin = logged_in(lab, "admin", "admin-secret")
    page = admin.get("/admin/contacts").text
    assert "Address books: carddav, ldap" in page
    reply = admin.post("/admin/contacts/sync", {"csrf": hidden(page, "csrf")})
    assert (reply.code, reply.header("location")) == (303, "/admin/contacts")
    assert runs == ["carddav", "ldap"]
    shown = admin.get("/admin/contacts").text
    assert "1 contacts from carddav" in shown and "1 contacts from ldap" in shown


@pytest.mark.parametrize(
    ("path", "row"),
    [
        ("/admin/forwards", r'<tr id="user-(\d+)"'),
        ("/admin/notifications", r'<tr id="user-(\d+)"'),
        ("/admin/callbacks", r'<tr id="call-waiting-(\d+)"'),
        ("/admin/users", r'<tr id="user-(\d+)"'),
    ],
)
def test_admin_lists_of_every_user_are_paged(
    features: Features, lab: Lab, admin: Browser, path: str, row: str
) -> None:
    """At 250 users (and more) an admin list shows 100 a page, in extension order, with a
    link to the next page; the last page has none, the others link back to the first."""
    lab.directory.put_users([User(str(3000 + i), f"Person {i}") for i in range(250)])
    shown: list[str] = []
    url: str | None = path
    pages = 0
    while url is not None:
        text = admin.get(url).text
        rows = re.findall(row, text)
        assert len(rows) <= 100, (url, len(rows))
        shown += rows
        pages += 1
        assert (pages > 1) == (f'<a href="{path}">' in text), url
        found = re.search(r'<a rel="next" href="([^"]+)"', text)
        url = found.group(1).replace("&amp;", "&") if found else None
    everyone = sorted(user.extension for user in lab.directory.users())
    assert shown == everyone and pages == 3
