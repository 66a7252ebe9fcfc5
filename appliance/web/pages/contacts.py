"""Admin: the contact directory and its import from ``.vcf`` files.

The upload is a multipart form; the router checks its CSRF field like any
other.  `ContactDirectory.import_vcf` stores every card of a file or, for a
malformed file, none; the page says how many were imported or why none was.
"""

from __future__ import annotations

from appliance.contacts import ContactDirectory, ContactError
from appliance.settings import Text
from appliance.web import i18n
from appliance.web.app import NavEntry, Page, Router

MAX_UPLOAD = 5 * 1024 * 1024
"""Bytes; a company address book is far smaller."""

i18n.add(
    {
        "nav_contacts": Text("Contacts", "Kontakte"),
        "contacts_title": Text("Contacts", "Kontakte"),
        "contacts_intro": Text(
            "Callers are named from these contacts in the missed-call journal and mails.",
            "Anrufer werden im Journal und in den Mails mit diesen Kontakten benannt.",
        ),
        "import_contacts": Text("Import contacts", "Kontakte importieren"),
        "vcf_file": Text("vCard file (.vcf)", "vCard-Datei (.vcf)"),
        "import": Text("Import", "Importieren"),
        "imported": Text("contacts imported.", "Kontakte importiert."),
        "import_failed": Text("Nothing was imported:", "Nichts wurde importiert:"),
        "no_file": Text("Please choose a .vcf file.", "Bitte eine .vcf-Datei wählen."),
        "file_too_big": Text("The file is larger than 5 MB.", "Die Datei ist größer als 5 MB."),
        "not_utf8": Text("The file is not UTF-8 text.", "Die Datei ist kein UTF-8-Text."),
        "no_cards": Text("The file holds no vCard.", "Die Datei enthält keine vCard."),
        "contact_count": Text("Contacts stored", "Gespeicherte Kontakte"),
        "organization": Text("Organisation", "Organisation"),
        "phone_numbers": Text("Phone numbers", "Rufnummern"),
        "no_contacts": Text("No contacts yet.", "Noch keine Kontakte."),
    }
)


class ContactPages:
    def __init__(self, contacts: ContactDirectory) -> None:
        self.contacts = contacts

    def install(self, router: Router) -> None:
        nav = NavEntry("/admin/contacts", "nav_contacts", "admin", order=70)
        router.route("/admin/contacts", self.show, access="admin", nav=nav)
        router.route("/admin/contacts", self.upload, access="admin", methods=["POST"], upload=True)

    def show(self, page: Page) -> bytes:
        imported = page.arg("imported")
        return self._render(page, 200, imported=int(imported) if imported.isdigit() else None)

    def upload(self, page: Page) -> bytes:
        values = (page.request.args or {}).get(b"file") or [b""]
        raw = values[0]
        if not raw:
            return self._render(page, 400, error=page.t("no_file"))
        if len(raw) > MAX_UPLOAD:
            return self._render(page, 400, error=page.t("file_too_big"))
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            return self._render(page, 400, error=page.t("not_utf8"))
        try:
            imported = self.contacts.import_vcf(text)
        except ContactError as problem:
            return self._render(page, 400, error=str(problem))
        if not imported:
            return self._render(page, 400, error=page.t("no_cards"))
        return page.redirect("/admin/contacts", {"imported": str(len(imported))})

    def _render(self, page: Page, status: int, imported: int | None = None, error: str = "") -> bytes:
        contacts = sorted(self.contacts.contacts(), key=lambda c: (c.name.casefold(), c.uid))
        return page.render("contacts.html", status=status, contacts=contacts, imported=imported, error=error)
