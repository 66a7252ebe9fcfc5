"""User: the own profile (language of the page, prompts and mails; own password).

Every handler works on ``page.login``, the logged-in user; no URL names a
user, so nobody can reach another user's profile here.
"""

from __future__ import annotations

from dataclasses import replace

from appliance.directory import Directory
from appliance.settings import Text
from appliance.web import i18n
from appliance.web.auth import MIN_PASSWORD_LENGTH, Credentials
from appliance.web.routing import Body, NavEntry, Page, Router

i18n.add(
    {
        "nav_profile": Text("My profile", "Mein Profil"),
        "profile_title": Text("My profile", "Mein Profil"),
        "change_password": Text("Change password", "Passwort ändern"),
        "current_password": Text("Current password", "Aktuelles Passwort"),
        "wrong_password": Text("The current password is wrong.", "Das aktuelle Passwort ist falsch."),
        "password_changed": Text("Password changed.", "Passwort geändert."),
        "invalid_language": Text("Please choose a language.", "Bitte eine Sprache wählen."),
    }
)


class ProfilePages:
    def __init__(self, directory: Directory, credentials: Credentials) -> None:
        self.directory = directory
        self.credentials = credentials

    def install(self, router: Router) -> None:
        nav = NavEntry("/me", "nav_profile", "user", order=10)
        router.route("/me", self.show, access="user", nav=nav)
        router.route("/me", self.save, access="user", methods=["POST"])
        router.route("/me/password", self.password, access="user", methods=["POST"])

    def show(self, page: Page) -> bytes:
        return self._render(page, 200, message=page.t("saved") if page.arg("saved") == "1" else "")

    def save(self, page: Page) -> bytes:
        user = self.directory.user(page.login)
        chosen = page.arg("language")
        language = "" if chosen == "" else i18n.as_language(chosen)
        if user is None:
            return page.error(404, "not_found", "not_found")
        if language is None:
            return self._render(page, 400, error=page.t("invalid_language"))
        self.directory.put_user(replace(user, language=language))
        return page.redirect("/me", {"saved": "1"})

    def password(self, page: Page) -> Body:
        new = page.arg("password")

        def checked(matches: bool) -> Body:
            if not matches:
                return self._render(page, 400, password_error=page.t("wrong_password"))
            if len(new) < MIN_PASSWORD_LENGTH:
                return self._render(page, 400, password_error=page.t("password_too_short"))
            changing = self.credentials.change_password(page.login, new)

            def changed(_: None) -> bytes:
                # Whoever else had this password is logged out; this browser stays in.
                assert page.session is not None
                page.web.sessions.end_others(page.login, page.session.id)
                return self._render(page, 200, message=page.t("password_changed"))

            return changing.addCallback(changed)

        return self.credentials.verify(page.login, page.arg("current")).addCallback(checked)

    def _render(
        self, page: Page, status: int, message: str = "", error: str = "", password_error: str = ""
    ) -> bytes:
        return page.render(
            "profile.html",
            status=status,
            user=self.directory.user(page.login),
            message=message,
            error=error,
            password_error=password_error,
        )
