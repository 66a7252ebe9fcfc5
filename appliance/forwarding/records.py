"""Forward records: what each user has set, kept in store namespace ``forwards``.

Key: the forwarding user's extension (their primary internal number, which is
also their PJSIP endpoint).  Value: a list of forwards, at most one per
(kind, scope).  A forward's target is a number or one of the announcements
(`appliance.announcements`).  Records are validated before they are stored, so a bad one is
refused whole with a message naming the field; records an older version left
behind that no longer validate are skipped with a log line, never half-used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from twisted.logger import Logger

from appliance.announcements import NAMES as BUILT_IN_ANNOUNCEMENTS
from appliance.announcements import KnownAnnouncement, is_announcement, name_of
from appliance.numbers import EXTENSION, FORWARD_TARGET
from appliance.store import IKeyValueStore, StoreChange, moved

log = Logger()

NAMESPACE = "forwards"

UNCONDITIONAL = "unconditional"
BUSY = "busy"
NOANSWER = "noanswer"
KINDS = (UNCONDITIONAL, BUSY, NOANSWER)

ALL = "all"
INTERNAL = "internal"
EXTERNAL = "external"
SCOPES = (ALL, INTERNAL, EXTERNAL)

DEFAULT_SECONDS = 20
MIN_SECONDS = 2
MAX_SECONDS = 300


def _built_in(name: str) -> bool:
    return name in BUILT_IN_ANNOUNCEMENTS


class ForwardError(ValueError):
    """A forward that cannot be stored, and why."""


@dataclass(frozen=True)
class Forward:
    """One forward of one user."""

    kind: str
    target: str
    scope: str = ALL
    seconds: int = DEFAULT_SECONDS
    """How long the forwarder's phone rings first; only for ``noanswer``."""
    enabled: bool = True

    def applies_to(self, origin: str) -> bool:
        """Does this forward apply to a call of ``origin`` (internal/external)?"""
        return self.enabled and self.scope in (ALL, origin)

    def validated(self, owner: str, known: KnownAnnouncement = _built_in) -> Forward:
        """The forward as stored, or `ForwardError`; ``known`` says which announcements exist."""
        where = f"forward of {owner}"
        if self.kind not in KINDS:
            raise ForwardError(f"{where}: kind: {self.kind!r} is not one of " + ", ".join(KINDS))
        if self.scope not in SCOPES:
            raise ForwardError(f"{where}: scope: {self.scope!r} is not one of " + ", ".join(SCOPES))
        if not isinstance(self.target, str):
            raise ForwardError(f"{where}: target: {self.target!r} is not a phone number")
        if is_announcement(self.target):
            name = name_of(self.target)
            if name is None or not known(name):
                examples = ", ".join(f"announcement:{name}" for name in BUILT_IN_ANNOUNCEMENTS)
                problem = f"{self.target!r} is not an announcement (e.g. {examples})"
                raise ForwardError(f"{where}: target: {problem}")
        elif not FORWARD_TARGET.match(self.target):
            raise ForwardError(f"{where}: target: {self.target!r} is not a phone number")
        if self.target == owner:
            raise ForwardError(f"{where}: target: a line cannot forward to itself")
        if isinstance(self.seconds, bool) or not isinstance(self.seconds, int):
            raise ForwardError(f"{where}: seconds: {self.seconds!r} is not a whole number")
        if not MIN_SECONDS <= self.seconds <= MAX_SECONDS:
            raise ForwardError(f"{where}: seconds: {self.seconds} is not {MIN_SECONDS} to {MAX_SECONDS}")
        if not isinstance(self.enabled, bool):
            raise ForwardError(f"{where}: enabled: {self.enabled!r} is not true or false")
        seconds = self.seconds if self.kind == NOANSWER else DEFAULT_SECONDS
        return replace(self, seconds=seconds)


def _forward(record: Any) -> Forward | None:
    try:
        return Forward(
            kind=record["kind"],
            target=record["target"],
            scope=record.get("scope", ALL),
            seconds=record.get("seconds", DEFAULT_SECONDS),
            enabled=record.get("enabled", True),
        )
    except (KeyError, TypeError, AttributeError):
        return None


class Forwards:
    """The API the feature codes and the web page use: list, set, clear per user."""

    def __init__(self, store: IKeyValueStore, announcements: KnownAnnouncement | None = None) -> None:
        self.store = store
        self.known: KnownAnnouncement = announcements or _built_in
        """Which announcements a forward may name (`appliance.announcements.Announcements.known`)."""

    def of(self, extension: str) -> list[Forward]:
        """The valid forwards of ``extension`` (empty if none or not an extension)."""
        if not EXTENSION.match(extension):
            return []
        raw = self.store.get(NAMESPACE, extension)
        if not isinstance(raw, list):
            return []
        result = []
        for record in raw:
            forward = _forward(record)
            if forward is None:
                log.warn("ignoring malformed forward of {ext}: {record!r}", ext=extension, record=record)
                continue
            try:
                result.append(forward.validated(extension, self.known))
            except ForwardError as error:
                log.warn("ignoring stored forward: {error}", error=error)
        return result

    def all(self) -> dict[str, list[Forward]]:
        return {key: forwards for key, _ in self.store.items(NAMESPACE) if (forwards := self.of(key))}

    def replace_all(self, extension: str, forwards: list[Forward]) -> list[Forward]:
        """Store exactly ``forwards`` for ``extension`` (all valid, one per kind and scope)."""
        if not EXTENSION.match(extension):
            raise ForwardError(f"extension: {extension!r} is not 2 to 8 digits")
        checked = [forward.validated(extension, self.known) for forward in forwards]
        seen: set[tuple[str, str]] = set()
        for forward in checked:
            if (forward.kind, forward.scope) in seen:
                raise ForwardError(
                    f"forward of {extension}: more than one {forward.kind} forward for {forward.scope} calls"
                )
            seen.add((forward.kind, forward.scope))
        if checked:
            self.store.put(NAMESPACE, extension, [asdict(forward) for forward in checked])
        else:
            self.store.delete(NAMESPACE, extension)
        return checked

    def moved(self, old: str, new: str | None) -> list[StoreChange]:
        """Store changes that carry ``old``'s forwards to ``new`` (None: drop them), for
        the caller's transaction: a group's forwards follow its number and go with it."""
        return moved(self.store, NAMESPACE, old, new)

    def set(self, extension: str, forward: Forward) -> list[Forward]:
        """Add ``forward``, replacing one of the same kind and scope."""
        kept = [f for f in self.of(extension) if (f.kind, f.scope) != (forward.kind, forward.scope)]
        return self.replace_all(extension, [*kept, forward])

    def clear(self, extension: str, kind: str | None = None, scope: str | None = None) -> list[Forward]:
        """Remove the forwards of ``kind``/``scope`` (None: any); returns what is left."""
        kept = [
            f
            for f in self.of(extension)
            if not ((kind is None or f.kind == kind) and (scope is None or f.scope == scope))
        ]
        return self.replace_all(extension, kept)
