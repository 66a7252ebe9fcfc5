"""The page groups, one module each.

A group is a class that receives the feature objects it shows and has an
``install(router)`` method; it adds its routes with ``router.route(path,
handler, access=..., methods=..., nav=NavEntry(...))``, its phrases with
`appliance.web.i18n.add`, and its templates under ``appliance/web/templates``.  The
router checks login, role and the CSRF token before a handler runs; a user's
page takes the account from ``page.login``, never from the URL, so a user
can only ever reach their own data.  A navigation entry appears only once a
group installs it.

Built in now: `settings` (admin: the key-value store), `users` (admin: the
user directory), `profile` (user: own language and password).

The feature groups, each added in `appliance.tap` with one ``web.add(...)``
line (order numbers keep the navigation stable):

- `forwards`: the user's own forwards (user, order 20); every user's
  forwards, with a link to the breakthrough settings (admin, order 30)
- `groups`: call groups with their members' state now, and each group's
  forwards (admin, order 25)
- `callbacks`: pending callback requests with cancel (admin 40, user 30)
- `journal`: the missed-call journal (admin 50, user 40); the missed-call
  mail opt-in (user 50) and who gets mail (admin 60)
- `contacts`: contact import from .vcf (admin 70)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from appliance.slices import reactor_cooperator
from appliance.web.pages.profile import ProfilePages
from appliance.web.pages.settings import SettingsPages
from appliance.web.pages.users import UserPages
from appliance.web.routing import PageGroup

if TYPE_CHECKING:
    from appliance.web.app import WebApp


def core_pages(web: WebApp) -> list[PageGroup]:
    """The groups every appliance has, built from the web app's own dependencies."""
    return [
        SettingsPages(web.settings),
        UserPages(web.directory, web.credentials, web.sessions, reactor_cooperator(web.clock)),
        ProfilePages(web.directory, web.credentials),
    ]
