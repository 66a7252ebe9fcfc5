"""API tokens in real headless Chromium: made on the page, used by a tool over
HTTP, revoked on the page."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from playwright.sync_api import Page, expect

from appliance.directory import User
from tests.browser.conftest import Running, log_in, screenshot


def api(running: Running, method: str, path: str, token: str, body: object = None) -> tuple[int, object]:
    """A tool's request, from outside the reactor thread."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        running.url + path, data=data, method=method, headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_user_makes_uses_and_revokes_a_token(page: Page, running: Running) -> None:
    """Erin makes a token on her page (shown once), a tool sets her forward with it,
    and after Revoke the same request is refused."""
    running.add_user(User("230", "Erin Fox", "", "en"), "erin-secret")
    running.call(lambda: running.appliance.forwarding.forwards.clear("230"))
    log_in(page, running, "230", "erin-secret")
    page.click("nav >> text=API tokens")
    expect(page).to_have_url(running.url + "/me/tokens")
    page.fill("#label", "<i>crm</i>")
    page.click("form.card button[type=submit]")
    secret = page.locator("#new-token").inner_text()
    assert secret.startswith("apl_")
    screenshot(page, "30-user-token-created")

    code, body = api(running, "PUT", "/api/v1/users/me/forwards", secret, {"kind": "busy", "target": "300"})
    assert code == 200, body
    assert [(f.kind, f.target) for f in running.call(running.appliance.forwarding.forwards.of, "230")] == [
        ("busy", "300")
    ]
    code, _ = api(running, "GET", "/api/v1/users/231/forwards", secret)
    assert code == 403

    page.goto(running.url + "/me/tokens")
    expect(page.locator("table.tokens td.name")).to_have_text("<i>crm</i>")
    assert secret not in page.content()
    page.click("table.tokens button")
    expect(page.get_by_role("status")).to_have_text("Token revoked.")
    code, _ = api(running, "GET", "/api/v1/users/me/forwards", secret)
    assert code == 401
