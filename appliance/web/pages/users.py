"""Admin: the user directory (list, add, edit, delete) and each user's web password.

`appliance.directory` validates the records; its message is shown above the
form and nothing is stored.  Deleting a user also removes their password and
ends their sessions.
"""

from __future__ import annotations

import re

from appliance.directory import Directory, DirectoryError, User
from appliance.settings import Text
from appliance.web import i18n
from appliance.web.app import Body, NavEntry, Page, Router
from appliance.web.auth import MIN_PASSWORD_LENGTH, Credentials, Sessions

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
    }
)

_SEPARATORS = re.compile(r"[,\s]+")


def _items(text: str) -> tuple[str, ...]:
    return tuple(item for item in _SEPARATORS.split(text) if item)


class UserPages:
    def __init__(self, directory: Directory, credentials: Credentials, sessions: Sessions) -> None:
        self.directory = directory
        self.credentials = credentials
        self.sessions = sessions

    def install(self, router: Router) -> None:
        nav = NavEntry("/admin/users", "nav_users", "admin", order=20)
        router.route("/admin/users", self.list, access="admin", nav=nav)
        router.route("/admin/users/new", self.new, access="admin")
        router.route("/admin/users/new", self.create, access="admin", methods=["POST"])
        router.route("/admin/users/<extension>", self.edit, access="admin")
        router.route("/admin/users/<extension>", self.update, access="admin", methods=["POST"])
        router.route("/admin/users/<extension>/delete", self.delete, access="admin", methods=["POST"])

    def list(self, page: Page) -> bytes:
        users = self.directory.users()
        logins = {user.extension: self.credentials.has_password(user.extension) for user in users}
        return page.render("users.html", users=users, logins=logins, deleted=page.arg("deleted") == "1")

    def new(self, page: Page) -> bytes:
        return self._form(page, 200, User("", "", language=page.language), is_new=True, error="")

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
        if self.directory.user(extension) is None:
            return page.error(404, "not_found", "not_found")
        return self._store(page, self._submitted(page, extension), is_new=False)

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
        )

    def _store(self, page: Page, user: User, is_new: bool) -> Body:
        password = page.arg("password")
        try:
            user = user.validated()
        except DirectoryError as problem:
            return self._form(page, 400, user, is_new=is_new, error=str(problem))
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
        self, page: Page, status: int, user: User, is_new: bool, error: str, saved: bool = False
    ) -> bytes:
        return page.render(
            "user_form.html",
            status=status,
            user=user,
            is_new=is_new,
            error=error,
            saved=saved,
            has_login=not is_new and self.credentials.has_password(user.extension),
        )
