"""Admin: the missed-call mail templates (download, upload, preview, back to shipped).

An upload is checked with the same safe parser the appliance uses at start
(`appliance.missed.render.load_template`): a refused one is shown with its
line and reason and changes nothing, so the last good template keeps
serving.  A good one is written to the customised-templates directory and
serves the next mail.  A new language code adds a language (and so a choice
of ``MC_LANGUAGE``).

The preview is the template's HTML for a sample call, served as its own
response under a sandboxing Content-Security-Policy (no script, no network),
since a template is markup the admin wrote.
"""

from __future__ import annotations

from appliance.missed.render import LANGUAGE_CODE, Renderer, TemplateError, template_file
from appliance.settings import Text
from appliance.web import i18n
from appliance.web.routing import NavEntry, Page, Router

MAX_TEMPLATE = 1024 * 1024
"""Bytes; a mail template is a few kilobytes."""

PREVIEW_POLICY = (
    b"sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    b"form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)

i18n.add(
    {
        "nav_templates": Text("Mail templates", "Mail-Vorlagen"),
        "templates_title": Text("Missed-call mail templates", "Vorlagen der Mail zu verpassten Anrufen"),
        "templates_intro": Text(
            "One XSL template per language (missed_call.<language>.xsl); the languages offered "
            "for mails are the templates present. Uploaded templates are kept in the "
            "customised-templates directory and override the shipped ones; upgrades keep them. "
            "A mail is written in the user's own language, else in MC_LANGUAGE, else in the "
            "appliance's language.",
            "Eine XSL-Vorlage je Sprache (missed_call.<Sprache>.xsl); angeboten werden die "
            "Sprachen, für die eine Vorlage vorhanden ist. Hochgeladene Vorlagen liegen im "
            "Verzeichnis für angepasste Vorlagen und gehen den mitgelieferten vor; Updates "
            "behalten sie. Eine Mail wird in der eigenen Sprache des Benutzers geschrieben, "
            "sonst in MC_LANGUAGE, sonst in der Sprache der Appliance.",
        ),
        "template_language": Text("Language", "Sprache"),
        "template_origin": Text("Template", "Vorlage"),
        "template_custom": Text("customised", "angepasst"),
        "template_shipped": Text("shipped", "mitgeliefert"),
        "download": Text("Download", "Herunterladen"),
        "preview": Text("Preview", "Vorschau"),
        "template_reset": Text("Back to shipped", "Zurück zur mitgelieferten"),
        "template_remove": Text("Remove", "Entfernen"),
        "upload_template": Text("Upload a template", "Vorlage hochladen"),
        "template_language_hint": Text(
            "Language code (2 or 3 letters); a new code adds a language",
            "Sprachcode (2 oder 3 Buchstaben); ein neuer Code fügt eine Sprache hinzu",
        ),
        "template_file": Text("XSL file", "XSL-Datei"),
        "template_saved": Text(
            "Template saved; the next mail uses it.", "Vorlage gespeichert; die nächste Mail verwendet sie."
        ),
        "template_removed": Text("Customised template removed.", "Angepasste Vorlage entfernt."),
        "template_refused": Text(
            "The template was refused; the previous one stays in use.",
            "Die Vorlage wurde abgelehnt; die bisherige bleibt in Gebrauch.",
        ),
        "template_line": Text("Line", "Zeile"),
        "template_bad_language": Text(
            "The language code must be 2 or 3 letters a-z.",
            "Der Sprachcode muss aus 2 oder 3 Buchstaben a-z bestehen.",
        ),
        "template_no_file": Text("Please choose an .xsl file.", "Bitte eine .xsl-Datei wählen."),
        "template_too_big": Text("The file is larger than 1 MB.", "Die Datei ist größer als 1 MB."),
        "template_directory": Text("Customised templates directory", "Verzeichnis der angepassten Vorlagen"),
    }
)


class TemplatePages:
    def __init__(self, renderer: Renderer) -> None:
        self.renderer = renderer

    def install(self, router: Router) -> None:
        nav = NavEntry("/admin/templates", "nav_templates", "admin", order=65)
        router.route("/admin/templates", self.show, access="admin", nav=nav)
        router.route("/admin/templates", self.upload, access="admin", methods=["POST"], upload=True)
        router.route("/admin/templates/<language>/download", self.download, access="admin")
        router.route("/admin/templates/<language>/preview", self.preview, access="admin")
        router.route("/admin/templates/<language>/remove", self.remove, access="admin", methods=["POST"])

    def show(self, page: Page) -> bytes:
        done = {"saved": "template_saved", "removed": "template_removed"}.get(page.arg("done"), "")
        return self._render(page, 200, message=page.t(done) if done else "")

    def download(self, page: Page, language: str) -> bytes:
        if language not in self.renderer.languages:
            return page.error(404, "not_found", "not_found")
        page.request.setHeader(b"Content-Type", b"application/xslt+xml; charset=utf-8")
        disposition = f'attachment; filename="{template_file(language)}"'
        page.request.setHeader(b"Content-Disposition", disposition.encode("ascii"))
        return self.renderer.source(language)

    def preview(self, page: Page, language: str) -> bytes:
        if language not in self.renderer.languages:
            return page.error(404, "not_found", "not_found")
        return self._preview(page, self.renderer.preview(None, language))

    def upload(self, page: Page) -> bytes:
        language = page.arg("language").strip().lower()
        raw = ((page.request.args or {}).get(b"file") or [b""])[0]
        if not LANGUAGE_CODE.fullmatch(language):
            return self._render(page, 400, error=page.t("template_bad_language"), language=language)
        if not raw:
            return self._render(page, 400, error=page.t("template_no_file"), language=language)
        if len(raw) > MAX_TEMPLATE:
            return self._render(page, 400, error=page.t("template_too_big"), language=language)
        try:
            if page.arg("action") == "preview":
                return self._preview(page, self.renderer.preview(raw, language))
            self.renderer.install(language, raw)
        except TemplateError as refused:
            return self._render(page, 400, refused=refused, language=language)
        return page.redirect("/admin/templates", {"done": "saved"})

    def remove(self, page: Page, language: str) -> bytes:
        if language not in self.renderer.languages:
            return page.error(404, "not_found", "not_found")
        try:
            self.renderer.remove(language)
        except TemplateError as refused:
            return self._render(page, 400, error=str(refused))
        return page.redirect("/admin/templates", {"done": "removed"})

    def _preview(self, page: Page, html: str) -> bytes:
        page.request.setHeader(b"Content-Security-Policy", PREVIEW_POLICY)
        page.request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        return html.encode("utf-8")

    def _render(
        self,
        page: Page,
        status: int,
        message: str = "",
        error: str = "",
        refused: TemplateError | None = None,
        language: str = "",
    ) -> bytes:
        renderer = self.renderer
        rows = [(code, renderer.is_custom(code)) for code in renderer.languages]
        return page.render(
            "templates.html",
            status=status,
            rows=rows,
            message=message,
            error=error,
            refused=refused,
            language=language,
            directory=str(renderer.custom or ""),
        )
