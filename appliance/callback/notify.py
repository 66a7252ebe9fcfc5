"""Callback by mail (seed 003: "automatisch angerufen oder Benachrichtigung").

Each user chooses how a due callback reaches them: ``ring`` (the default: the
appliance rings them, then the target) or ``mail`` (a mail says the target is
free now).  Whatever they chose, a request that expires or runs out of
retries ends with a mail saying so.  Mails go through the outbox of the
missed-call mails (`appliance.mail.Outbox`), with the store key as their
idempotency key, so a mail is queued once.

`mail_for` is pure: it builds the message from what it is given.
"""

from __future__ import annotations

from email.message import EmailMessage
from html import escape

from appliance.callback.engine import Request
from appliance.mail import address, compose, header_text, is_address, message_id

NAMESPACE = "callback_notify"
"""Store namespace: user → ``mail`` (absent means ``ring``)."""
MODES = ("ring", "mail")

# why → (subject, body) per language; {target} is "<number> (<name>)".
TEXTS: dict[str, dict[str, tuple[str, str]]] = {
    "free": {
        "de": ("Rückruf: {target} ist jetzt frei", "{target} ist jetzt frei. Sie können jetzt anrufen."),
        "en": ("Callback: {target} is free now", "{target} is free now. You can call now."),
    },
    "expired": {
        "de": (
            "Rückruf zu {target} abgelaufen",
            "Ihr Rückrufwunsch zu {target} ist abgelaufen, ohne dass die Leitung frei wurde.",
        ),
        "en": (
            "Callback to {target} expired",
            "Your callback request to {target} expired before the line became free.",
        ),
    },
    "attempts": {
        "de": (
            "Rückruf zu {target} aufgegeben",
            "Der Rückruf zu {target} wurde aufgegeben: Sie haben den Rückruf mehrmals nicht angenommen.",
        ),
        "en": (
            "Callback to {target} given up",
            "The callback to {target} was given up: you did not take it several times.",
        ),
    },
}


def mail_key(request: Request, why: str) -> str:
    """One mail per request and reason, however often the decision is repeated."""
    return f"callback:{request.id}:{request.created:.3f}:{why}"


def mail_for(
    why: str,
    request: Request,
    *,
    to_name: str,
    to_address: str,
    target_name: str,
    language: str,
    sender: str,
    now: float,
) -> EmailMessage | None:
    """The mail telling the requester ``why`` (free, expired, attempts), or None
    when there is nobody to send it to."""
    if why not in TEXTS or not is_address(to_address) or not is_address(sender):
        return None
    subject, body = TEXTS[why].get(language, TEXTS[why]["en"])
    name = header_text(target_name, 60)
    target = f"{request.target} ({name})" if name and name != request.target else request.target
    text = body.format(target=target)
    html = f'<!DOCTYPE html><html lang="{escape(language)}"><body><p>{escape(text)}</p></body></html>'
    return compose(
        sender=address("", sender),
        to=address(to_name, to_address),
        subject=subject.format(target=target),
        text=text + "\n",
        html=html,
        now=now,
        message_id=message_id(mail_key(request, why), sender),
    )
