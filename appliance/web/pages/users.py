"""Admin: the user directory (list in pages, add, edit, delete, CSV export and
import) and each user's web password.

`appliance.directory` validates the records; its message is shown above the
form (a number that is a group's beside its field) and nothing is stored.
Deleting a user also removes their password and ends their sessions.  A CSV
import is shown as a preview first (every bad line with its reason);
confirming stores all its users in one transaction, or none.
Users created from Asterisk endpoints that are gone are flagged, not deleted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace

from twisted.internet.task import Cooperator

from appliance.directory import Directory, DirectoryError, User
from appliance.settings import Text
from appliance.usercsv import Parsed, parse_steps, parse_users_csv, users_csv
from appliance.web import i18n
from appliance.web.auth import MIN_PASSWORD_LENGTH, Credentials, Sessions
from appliance.web.pages.paging import user_slice
from appliance.web.routing import Body, NavEntry, Page, Router

i18n.add(
    {
        "nav_users": Text("Users", "Benutzer"),
        "users_title": Text("User directory", "Benutzerverzeichnis"),
        "add_user": Text("Add user", "Benutzer anlegen"),
        "edit_user": Text("Edit user", "Benutzer bearbeiten"),
        "extension": Text("Extension", "Rufnummer"),
        "name": Text("Name", "Name"),
        "email": Text("E-mail", "E-Mail"),
        "groups": Text("Groups", "Gruppen"),
        "numbers": Text("Further numbers", "Weitere Rufnummern"),
        "separated": Text("separated by commas or spaces", "durch Komma oder Leerzeichen getrennt"),
        "web_login": Text("Web login", "Web-Anmeldung"),
        "new_password": Text("New password", "Neues Passwort"),
        "keep_password": Text("leave empty to keep it", "leer lassen, um es zu behalten"),
        "user_exists": Text(
            "A user with this extension exists already.", "Diese Rufnummer ist schon vergeben."
        ),
        "no_users": Text("No users yet.", "Noch keine Benutzer."),
        "yes": Text("yes", "ja"),
        "no": Text("no", "nein"),
        "delete_user": Text("Delete this user", "Diesen Benutzer löschen"),
        "user_deleted": Text("User deleted.", "Benutzer gelöscht."),
        "devices": Text("Further devices (PJSIP endpoints)", "Weitere Geräte (PJSIP-Endpunkte)"),
        "asterisk": Text("Asterisk", "Asterisk"),
        "phones": Text("Phones", "Telefone"),
        "phone_registered": Text("logged in", "angemeldet"),
        "phone_unregistered": Text("logged out", "abgemeldet"),
        "from_pbx": Text("from Asterisk", "aus Asterisk"),
        "vanished": Text("endpoint gone", "Endpunkt entfernt"),
        "export_csv": Text("Export CSV", "CSV exportieren"),
        "import_csv": Text("Import CSV", "CSV importieren"),
        "csv_file": Text("CSV file", "CSV-Datei"),
        "check_import": Text("Check", "Prüfen"),
        "csv_columns": Text(
            "Columns: extension, name, email, language, groups, devices, numbers "
            "(lists separated by spaces).",
            "Spalten: extension, name, email, language, groups, devices, numbers "
            "(Listen durch Leerzeichen getrennt).",
        ),
        "csv_preview": Text("Import preview", "Import-Vorschau"),
        "csv_bad_lines": Text(
            "Nothing can be imported; correct these lines:",
            "Nichts kann importiert werden; bitte diese Zeilen korrigieren:",
        ),
        "csv_line": Text("Line", "Zeile"),
        "csv_reason": Text("Problem", "Problem"),
        "csv_ready": Text("users will be stored:", "Benutzer werden gespeichert:"),
        "csv_new": Text("new", "neu"),
        "csv_changed": Text("changed", "geändert"),
        "csv_confirm": Text("Import all", "Alle importieren"),
        "csv_imported": Text("users imported.", "Benutzer importiert."),
        "next_page": Text("Next page", "Nächste Seite"),
        "first_page": Text("First page", "Erste Seite"),
    }
)

_SEPARATORS = re.compile(r"[,\s]+")
AT_ONCE_ROWS = 300
"""A CSV up to this many lines is checked and stored at once (~30 ms); a larger one in
slices, so the reactor is never held long."""
MAX_CSV = 2 * 1024 * 1024


_Problems = list[tuple[int, str]]
_Users = list[User]
_FORM_FIELDS = ("name", "email", "language", "groups", "numbers", "devices")


def _items(text: str) -> tuple[str, ...]:
    return tuple(item for item in _SEPARATORS.split(text) if item)


class UserPages:
    def __init__(
        self,
        directory: Directory,
        credentials: Credentials,
        sessions: Sessions,
        cooperator: Cooperator | None = None,
    ) -> None:
        self.directory = directory
        self.credentials = credentials
        self.sessions = sessions
        self.cooperator = cooperator
        """Checks and writes a large CSV in slices; without one, at once (tests)."""

    def install(self, router: Router) -> None:
        nav = NavEntry("/admin/users", "nav_users", "admin", order=20)
        router.route("/admin/users", self.list, access="admin", nav=nav)
        router.route("/admin/users/export.csv", self.export, access="admin")
        router.route("/admin/users/import", self.check_import, access="admin", methods=["POST"])
        router.route("/admin/users/import/confirm", self.confirm_import, access="admin", methods=["POST"])
        router.route("/admin/users/new", self.new, access="admin")
        router.route("/admin/users/new", self.create, access="admin", methods=["POST"])
        router.route("/admin/users/<extension>", self.edit, access="admin")
        router.route("/admin/users/<extension>", self.update, access="admin", methods=["POST"])
        router.route("/admin/users/<extension>/delete", self.delete, access="admin", methods=["POST"])

    def list(self, page: Page) -> bytes:
        shown = user_slice(self.directory, page.arg("after"))
        users = shown.users
        logins = {user.extension: self.credentials.has_password(user.extension) for user in users}
        phones = {
            user.extension: [
                (e, page.web.registered(e)) for e in dict.fromkeys((user.extension, *user.devices))
            ]
            for user in users
        }
        imported = page.arg("imported")
        return page.render(
            "users.html",
            users=users,
            logins=logins,
            phones=phones,
            deleted=page.arg("deleted") == "1",
            imported=int(imported) if imported.isdigit() else None,
            after=shown.after,
            next_after=shown.next_after,
        )

    def export(self, page: Page) -> bytes:
        page.request.setHeader(b"Content-Type", b"text/csv; charset=utf-8")
        page.request.setHeader(b"Content-Disposition", b'attachment; filename="users.csv"')
        return users_csv(self.directory.users()).encode("utf-8")

    def check_import(self, page: Page) -> Body:
        values = (page.request.args or {}).get(b"file") or [b""]
        return self._preview(page, values[0])

    def confirm_import(self, page: Page) -> Body:
        return self._preview(page, page.arg("content").encode("utf-8"), confirmed=True)

    def _preview(self, page: Page, raw: bytes, confirmed: bool = False) -> Body:
        if len(raw) > MAX_CSV:
            return self._preview_page(page, 400, "", problems=[(1, "the file is larger than 2 MB")])
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            return self._preview_page(page, 400, "", problems=[(1, "the file is not UTF-8 text")])
        existing = {user.extension: user for user in self.directory.users()}
        if self.cooperator is None or text.count("\n") <= AT_ONCE_ROWS:
            return self._checked(page, text, existing, parse_users_csv(text, existing), confirmed)
        steps = parse_steps(text, existing)
        found: list[Parsed] = []

        def collect() -> Iterator[None]:
            found.append((yield from steps))

        checked = self.cooperator.coiterate(collect())
        return checked.addCallback(lambda _: self._checked(page, text, existing, found[0], confirmed))

    def _checked(
        self, page: Page, text: str, existing: dict[str, User], parsed: Parsed, confirmed: bool
    ) -> Body:
        problems = [(p.line, p.reason) for p in parsed.problems]
        if not problems and not parsed.users:
            problems = [(2, "the file names no user")]
        if not problems and (conflict := self._conflict(page, list(parsed.users))):
            extension, why = conflict
            line = dict(zip((u.extension for u in parsed.users), parsed.lines, strict=False)).get(
                extension, 1
            )
            problems = [(line, why)]
        if problems:
            return self._preview_page(page, 400, text, problems=problems)
        if not confirmed:
            new = [u for u in parsed.users if u.extension not in existing]
            changed = [u for u in parsed.users if u.extension in existing and existing[u.extension] != u]
            return self._preview_page(page, 200, text, new=new, changed=changed)
        done = page.redirect("/admin/users", {"imported": str(len(parsed.users))})
        if self.cooperator is None or len(parsed.users) <= AT_ONCE_ROWS:
            self.directory.put_users(list(parsed.users))
            return done
        return self.directory.put_users_in_slices(list(parsed.users), self.cooperator).addCallback(
            lambda _: done
        )

    def _conflict(self, page: Page, users: _Users) -> tuple[str, str] | None:
        """(extension, why) when the users cannot be stored beside the others: a phone
        with two owners, or a number that is a group's."""
        problem = self.directory.device_problem(users)
        if problem is not None:
            return problem
        clash = self.directory.user_number_clash(users)
        return None if clash is None else (clash.who, clash.text.in_(page.language))

    def _preview_page(
        self,
        page: Page,
        status: int,
        text: str,
        problems: _Problems | None = None,
        new: _Users | None = None,
        changed: _Users | None = None,
    ) -> bytes:
        return page.render(
            "users_import.html",
            status=status,
            content=text,
            problems=problems or [],
            new=new or [],
            changed=changed or [],
        )

    def new(self, page: Page) -> bytes:
        return self._form(page, 200, User("", ""), is_new=True, error="")

    def edit(self, page: Page, extension: str) -> bytes:
        user = self.directory.user(extension)
        if user is None:
            return page.error(404, "not_found", "not_found")
        return self._form(page, 200, user, is_new=False, error="", saved=page.arg("saved") == "1")

    def create(self, page: Page) -> Body:
        user = self._submitted(page, page.arg("extension").strip())
        if self.directory.user(user.extension) is not None:
            return self._form(page, 400, user, is_new=True, error=page.t("user_exists"))
        return self._store(page, user, is_new=True)

    def update(self, page: Page, extension: str) -> Body:
        existing = self.directory.user(extension)
        if existing is None:
            return page.error(404, "not_found", "not_found")
        submitted = self._submitted(page, extension)
        # What the form does not show (Asterisk flags) stays as it is.
        kept = replace(existing, **{f: getattr(submitted, f) for f in _FORM_FIELDS})
        return self._store(page, kept, is_new=False)

    def delete(self, page: Page, extension: str) -> bytes:
        self.directory.delete_user(extension)
        self.credentials.remove(extension)
        self.sessions.end_all(extension)
        return page.redirect("/admin/users", {"deleted": "1"})

    def _submitted(self, page: Page, extension: str) -> User:
        return User(
            extension=extension,
            name=page.arg("name"),
            email=page.arg("email").strip(),
            language=page.arg("language"),
            groups=_items(page.arg("groups")),
            numbers=_items(page.arg("numbers")),
            devices=_items(page.arg("devices")),
        )

    def _store(self, page: Page, user: User, is_new: bool) -> Body:
        password = page.arg("password")
        try:
            user = user.validated()
            if (conflict := self.directory.device_problem([user])) is not None:
                raise DirectoryError(conflict[1])
        except DirectoryError as problem:
            return self._form(page, 400, user, is_new=is_new, error=str(problem))
        problems = {c.field: c.text.in_(page.language) for c in self.directory.user_number_clashes([user])}
        if problems:
            return self._form(page, 400, user, is_new=is_new, error="", problems=problems)
        if password and len(password) < MIN_PASSWORD_LENGTH:
            return self._form(page, 400, user, is_new=is_new, error=page.t("password_too_short"))
        self.directory.put_user(user)
        done = page.redirect(f"/admin/users/{user.extension}", {"saved": "1"})
        if not password:
            return done

        def changed(_: None) -> bytes:
            self.sessions.end_all(user.extension)
            return done

        return self.credentials.change_password(user.extension, password).addCallback(changed)

    def _form(
        self,
        page: Page,
        status: int,
        user: User,
        is_new: bool,
        error: str,
        saved: bool = False,
        problems: dict[str, str] | None = None,
    ) -> bytes:
        return page.render(
            "user_form.html",
            status=status,
            user=user,
            is_new=is_new,
            error=error,
            problems=problems or {},
            saved=saved,
            has_login=not is_new and self.credentials.has_password(user.extension),
        )
