"""API tokens: per-account bearer tokens for tools, kept hashed in the store.

A token is shown once when it is made; the store keeps only its SHA-256 (the
token is 256 random bits, so a plain hash is enough; no salt or slow hash is
needed as for passwords).  A token acts for the account that made it: a
user's for that user only, the admin's for every user.  `RateLimit` spreads
each token's requests over time on the injected clock.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest

from appliance.store import IKeyValueStore

NAMESPACE = "api_tokens"
PREFIX = "apl_"
MAX_TOKENS_PER_ACCOUNT = 10
MAX_LABEL = 40
_TOKEN = re.compile(r"^apl_[A-Za-z0-9_-]{43}$")
_ID = re.compile(r"^[0-9a-f]{64}$")


class TokenError(ValueError):
    """A token that cannot be made, and why."""


@dataclass(frozen=True)
class ApiToken:
    id: str
    """The SHA-256 of the token, hex: the store key, safe to show and to name in a revoke."""
    login: str
    label: str
    created: float

    @property
    def short(self) -> str:
        return self.id[:12]


def token_id(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class ApiTokens:
    def __init__(self, store: IKeyValueStore, clock: IReactorTime) -> None:
        self.store = store
        self.clock = clock

    def create(self, login: str, label: str) -> tuple[str, ApiToken]:
        """A new token for ``login``: (the secret, shown once; its record)."""
        label = "".join(ch for ch in label if ch.isprintable()).strip()
        if len(label) > MAX_LABEL:
            raise TokenError(f"label: at most {MAX_LABEL} characters")
        if len(self.of(login)) >= MAX_TOKENS_PER_ACCOUNT:
            raise TokenError(f"at most {MAX_TOKENS_PER_ACCOUNT} tokens per account")
        secret = PREFIX + secrets.token_urlsafe(32)
        token = ApiToken(token_id(secret), login, label, self.clock.seconds())
        self.store.put(NAMESPACE, token.id, {"login": login, "label": label, "created": token.created})
        return secret, token

    def find(self, secret: str) -> ApiToken | None:
        """The token record for a presented secret, or None."""
        if not _TOKEN.match(secret):
            return None
        return self._record(token_id(secret))

    def of(self, login: str) -> list[ApiToken]:
        found = [self._record(key) for key, _ in self.store.items(NAMESPACE)]
        return sorted((t for t in found if t is not None and t.login == login), key=lambda t: t.created)

    def revoke(self, login: str, ident: str) -> bool:
        """Delete ``login``'s token ``ident``; False if it is not theirs."""
        token = self._record(ident) if _ID.match(ident) else None
        if token is None or token.login != login:
            return False
        self.store.delete(NAMESPACE, ident)
        return True

    def revoke_all(self, login: str) -> None:
        for token in self.of(login):
            self.store.delete(NAMESPACE, token.id)

    def _record(self, ident: str) -> ApiToken | None:
        raw = self.store.get(NAMESPACE, ident)
        if not isinstance(raw, dict):
            return None
        try:
            return ApiToken(ident, str(raw["login"]), str(raw.get("label", "")), float(raw["created"]))
        except (KeyError, TypeError, ValueError):
            return None


class RateLimit:
    """A token bucket per key: ``burst`` requests at once, then ``per_minute``."""

    def __init__(self, clock: IReactorTime, per_minute: float = 60.0, burst: float = 20.0) -> None:
        self.clock = clock
        self.rate = per_minute / 60.0
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str) -> bool:
        now = self.clock.seconds()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > 10000:
            self._forget_full(now)
        return True

    def retry_after(self, key: str) -> int:
        tokens, _ = self._buckets.get(key, (self.burst, 0.0))
        return max(1, int((1.0 - tokens) / self.rate + 0.999))

    def _forget_full(self, now: float) -> None:
        for key, (tokens, last) in list(self._buckets.items()):
            if tokens + (now - last) * self.rate >= self.burst:
                del self._buckets[key]


def bearer(request: IRequest) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if any."""
    header = request.getHeader(b"authorization")
    if not header:
        return None
    scheme, _, value = header.decode("latin-1").strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None
