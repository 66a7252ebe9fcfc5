"""API tokens on the page: each account makes and revokes its own (a user's
act for that user, the admin's for everyone); the secret is shown once."""

from __future__ import annotations

from appliance.settings import Text
from appliance.web import i18n
from appliance.web.routing import NavEntry, Page, Router
from appliance.web.tokens import ApiTokens, TokenError

i18n.add(
    {
        "nav_tokens": Text("API tokens", "API-Tokens"),
        "tokens_title": Text("API tokens", "API-Tokens"),
        "tokens_intro": Text(
            "Tools use a token to read and set your forwards, do-not-disturb and callbacks "
            "(see the README's JSON API). A token acts only for you.",
            "Programme lesen und setzen mit einem Token Ihre Umleitungen, Ruhe vor dem Telefon "
            "und Rückrufe (siehe JSON-API im README). Ein Token handelt nur für Sie.",
        ),
        "tokens_intro_admin": Text(
            "An admin token acts for every user and may read /metrics.",
            "Ein Admin-Token handelt für alle Benutzer und darf /metrics lesen.",
        ),
        "token_label": Text("Name", "Name"),
        "token_id": Text("Token", "Token"),
        "token_created_at": Text("Created", "Erstellt"),
        "token_create": Text("Create token", "Token erstellen"),
        "token_revoke": Text("Revoke", "Widerrufen"),
        "token_created": Text(
            "Token created. Copy it now: it is not shown again.",
            "Token erstellt. Jetzt kopieren: es wird nicht noch einmal angezeigt.",
        ),
        "token_revoked": Text("Token revoked.", "Token widerrufen."),
        "no_tokens": Text("No tokens.", "Keine Tokens."),
    }
)


class TokenPages:
    def __init__(self, tokens: ApiTokens) -> None:
        self.tokens = tokens

    def install(self, router: Router) -> None:
        user_nav = NavEntry("/me/tokens", "nav_tokens", "user", order=60)
        router.route("/me/tokens", self.show, access="user", nav=user_nav)
        router.route("/me/tokens", self.create, access="user", methods=["POST"])
        router.route("/me/tokens/revoke", self.revoke, access="user", methods=["POST"])
        admin_nav = NavEntry("/admin/tokens", "nav_tokens", "admin", order=80)
        router.route("/admin/tokens", self.show, access="admin", nav=admin_nav)
        router.route("/admin/tokens", self.create, access="admin", methods=["POST"])
        router.route("/admin/tokens/revoke", self.revoke, access="admin", methods=["POST"])

    @staticmethod
    def _base(page: Page) -> str:
        return "/admin/tokens" if page.session is not None and page.session.role == "admin" else "/me/tokens"

    def show(self, page: Page) -> bytes:
        return self._render(page, 200, revoked=page.arg("revoked") == "1")

    def create(self, page: Page) -> bytes:
        try:
            secret, _ = self.tokens.create(page.login, page.arg("label"))
        except TokenError as error:
            return self._render(page, 400, error=str(error))
        return self._render(page, 200, secret=secret)

    def revoke(self, page: Page) -> bytes:
        if not self.tokens.revoke(page.login, page.arg("id")):
            return page.error(404, "not_found", "not_found")
        return page.redirect(self._base(page), {"revoked": "1"})

    def _render(
        self, page: Page, status: int, secret: str = "", error: str = "", revoked: bool = False
    ) -> bytes:
        return page.render(
            "tokens.html",
            status=status,
            tokens=self.tokens.of(page.login),
            base=self._base(page),
            admin=self._base(page) == "/admin/tokens",
            secret=secret,
            error=error,
            revoked=revoked,
        )
