"""Admin: the key-value store as a table (key, description, value, default) with a filter.

Saving sends only the values the admin changed to `Settings.set_many`, which
stores all of them or none; subscribers hear of the change at once, so Save
takes effect without a restart.  Refused values stay in their fields with the
reason beside them.
"""

from __future__ import annotations

from typing import Any

from appliance.settings import SCHEMA, InvalidSetting, ParseError, Setting, Settings, Text
from appliance.web import i18n
from appliance.web.routing import NavEntry, Page, Router

i18n.add(
    {
        "nav_settings": Text("Settings", "Einstellungen"),
        "settings_title": Text("Settings", "Einstellungen"),
        "settings_intro": Text(
            "Changes take effect as soon as they are saved.",
            "Änderungen wirken sofort nach dem Speichern.",
        ),
        "key": Text("Key", "Schlüssel"),
        "description": Text("Description", "Beschreibung"),
        "value": Text("Value", "Wert"),
        "default": Text("Default", "Standard"),
        "filter_placeholder": Text("Key or description, e.g. CC_", "Schlüssel oder Beschreibung, z.B. CC_"),
        "no_match": Text("No setting matches the filter.", "Keine Einstellung passt zum Filter."),
        "show_all": Text("Show all", "Alle anzeigen"),
    }
)


def field(name: str) -> str:
    """The form field that carries a setting's value."""
    return f"value.{name}"


class SettingsPages:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def install(self, router: Router) -> None:
        nav = NavEntry("/admin/settings", "nav_settings", "admin", order=10)
        router.route("/admin/settings", self.show, access="admin", nav=nav)
        router.route("/admin/settings", self.save, access="admin", methods=["POST"])

    def show(self, page: Page) -> bytes:
        return self._render(page, 200, submitted={}, errors={}, saved=page.arg("saved") == "1")

    def save(self, page: Page) -> bytes:
        changed: dict[str | Setting[Any], object] = {}
        submitted: dict[str, str] = {}
        for name, setting in SCHEMA.items():
            if not page.has_arg(field(name)):
                continue
            raw = submitted[name] = page.arg(field(name))
            try:
                if setting.kind.parse(raw) == self.settings.get(setting):
                    continue
            except ParseError:
                pass
            changed[name] = raw
        try:
            self.settings.set_many(changed)
        except InvalidSetting as refused:
            errors = {problem.name: problem.message(page.language) for problem in refused.problems}
            return self._render(page, 400, submitted=submitted, errors=errors, saved=False)
        return page.redirect("/admin/settings", {"q": page.arg("q"), "saved": "1" if changed else ""})

    def _render(
        self, page: Page, status: int, submitted: dict[str, str], errors: dict[str, str], saved: bool
    ) -> bytes:
        query = page.arg("q").strip()
        rows = self.settings.describe(page.language, matching=query)
        return page.render(
            "settings.html",
            status=status,
            rows=rows,
            query=query,
            submitted=submitted,
            errors=errors,
            saved=saved,
            field=field,
        )
