"""Admin: the contact directory, in pages with a search, and its import from ``.vcf`` files.

The upload is a multipart form; the router checks its CSRF field like any
other.  The import runs as a sliced `ContactJobs` job (a large file never holds
the reactor); a malformed file stores nothing, and the page says how many
cards were imported or why none was.  The list shows one page of contacts,
read through the store's index: never the whole address book.
"""

from __future__ import annotations

from typing import Any

from twisted.python.failure import Failure

from appliance.contacts import ContactDirectory, ContactError
from appliance.contactsync import ContactJobs, ContactSources
from appliance.settings import Text
from appliance.web import i18n
from appliance.web.routing import NavEntry, Page, Router

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
        "no_contacts_found": Text("No contact matches.", "Kein Kontakt passt."),
        "search_contacts": Text("Name, company or number", "Name, Firma oder Rufnummer"),
        "search": Text("Search", "Suchen"),
        "next_page": Text("Next page", "Nächste Seite"),
        "first_page": Text("First page", "Erste Seite"),
        "job_running": Text("running", "läuft"),
        "job_done": Text("done", "fertig"),
        "address_books": Text("Address books", "Adressbücher"),
        "sync_now": Text("Sync now", "Jetzt abgleichen"),
    }
)


PAGE_SIZE = 50


class ContactPages:
    def __init__(
        self, contacts: ContactDirectory, jobs: ContactJobs, sources: ContactSources | None = None
    ) -> None:
        self.contacts = contacts
        self.jobs = jobs
        self.sources = sources

    def install(self, router: Router) -> None:
        nav = NavEntry("/admin/contacts", "nav_contacts", "admin", order=70)
        router.route("/admin/contacts", self.show, access="admin", nav=nav)
        router.route("/admin/contacts", self.upload, access="admin", methods=["POST"], upload=True)
        router.route("/admin/contacts/sync", self.sync_now, access="admin", methods=["POST"])

    def sync_now(self, page: Page) -> bytes:
        """Start a sync of every address book; the page shows its progress and result."""
        if self.sources is not None:
            self.sources.sync_all()
        return page.redirect("/admin/contacts")

    def show(self, page: Page) -> bytes:
        imported = page.arg("imported")
        return self._render(page, 200, imported=int(imported) if imported.isdigit() else None)

    def upload(self, page: Page) -> Any:
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

        def done(count: int) -> bytes:
            return page.redirect("/admin/contacts", {"imported": str(count)})

        def refused(failure: Failure) -> bytes:
            failure.trap(ContactError)
            empty = "no vCard" in str(failure.value)
            return self._render(page, 400, error=page.t("no_cards") if empty else str(failure.value))

        return self.jobs.import_vcf(text).addCallbacks(done, refused)

    def _render(self, page: Page, status: int, imported: int | None = None, error: str = "") -> bytes:
        query = page.arg("q").strip()
        contacts, cursor = self.contacts.page(after=page.arg("after"), limit=PAGE_SIZE, search=query)
        return page.render(
            "contacts.html",
            status=status,
            contacts=contacts,
            count=self.contacts.count(),
            query=query,
            after=page.arg("after"),
            next_after=cursor,
            jobs=sorted(self.jobs.status.values(), key=lambda job: job.name),
            sources=sorted(self.sources.sources) if self.sources is not None else [],
            imported=imported,
            error=error,
        )
