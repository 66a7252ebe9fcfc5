"""Large contact jobs in slices: a 50,000-card import, an address-book sync, a
re-index after the admin changed the country or area code.

Each job is a generator of small steps (one card parsed, or one batch of
`WRITE_BATCH` contacts written in one transaction) run by a Twisted
`Cooperator`, which hands the reactor back after a few milliseconds of steps;
calls, AMI events and pages go on in between.  A job reports its progress in a
`JobStatus` the contacts page shows.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import Cooperator, LoopingCall
from twisted.logger import Logger

from appliance.contacts import (
    CONTACTS,
    COUNT,
    INDEX,
    WRITE_BATCH,
    Contact,
    ContactDirectory,
    ContactError,
    iter_vcards,
    stored_contact,
)

log = Logger()


@dataclass(frozen=True)
class JobStatus:
    """What one contact job is doing or did, for the page."""

    name: str
    running: bool = False
    done: int = 0
    total: int = 0
    result: str = ""
    """The last outcome in words ("" while none)."""
    ok: bool = True
    finished: float | None = None


class ContactJobs:
    """Runs contact jobs one after another and keeps each one's status."""

    def __init__(self, contacts: ContactDirectory, cooperator: Cooperator, clock: Any) -> None:
        self.contacts = contacts
        self.cooperator = cooperator
        self.clock = clock
        self.status: dict[str, JobStatus] = {}

    def _set(self, name: str, **changes: Any) -> None:
        self.status[name] = replace(self.status.get(name, JobStatus(name)), **changes)

    def running(self, name: str) -> bool:
        return self.status.get(name, JobStatus(name)).running

    def run(
        self, name: str, steps: Generator[object, None, Any], describe: Callable[[Any], str]
    ) -> Deferred[Any]:
        """Run ``steps``; its return value (from ``StopIteration``) is described as the result."""
        self._set(name, running=True, done=0, total=0, result="", ok=True)
        outcome: list[Any] = []

        def collect() -> Iterator[object]:
            outcome.append((yield from steps))

        def finished(_: object) -> Any:
            value = outcome[0] if outcome else None
            self._set(name, running=False, result=describe(value), ok=True, finished=self.clock.seconds())
            log.info("contact job {job}: {result}", job=name, result=self.status[name].result)
            return value

        def failed(failure: Any) -> Any:
            error = failure.value
            expected = isinstance(error, ContactError | ValueError | OSError)
            text = str(error) if expected else repr(error)
            self._set(name, running=False, result=text, ok=False, finished=self.clock.seconds())
            if expected:
                log.warn("contact job {job} failed: {why}", job=name, why=text)
            else:
                log.failure("contact job {job} failed", failure, job=name)
            return failure

        return self.cooperator.coiterate(collect()).addCallbacks(finished, failed)

    def progress(self, name: str, done: int, total: int) -> None:
        self._set(name, done=done, total=total)

    # -- the jobs -----------------------------------------------------------------

    def write_steps(self, name: str, contacts: list[Contact]) -> Iterator[object]:
        """Write ``contacts`` in batches, one transaction each."""
        for start in range(0, len(contacts), WRITE_BATCH):
            self.contacts.put(contacts[start : start + WRITE_BATCH])
            self.progress(name, min(start + WRITE_BATCH, len(contacts)), len(contacts))
            yield None

    def import_vcf(self, text: str) -> Deferred[Any]:
        """Parse the whole file first (a malformed one imports nothing), then write."""
        name = "vcf"

        def steps() -> Generator[object, None, int]:
            parsed: list[Contact] = []
            for contact in iter_vcards(text):
                parsed.append(contact)
                self.progress(name, len(parsed), 0)
                yield None
            if not parsed:
                raise ContactError("the file holds no vCard")
            yield from self.write_steps(name, parsed)
            return len(parsed)

        return self.run(name, steps(), lambda count: f"{count} contacts imported")

    def reindex(self) -> Deferred[Any]:
        """Index every contact again under the current number plan."""
        name = "reindex"

        def steps() -> Generator[object, None, int]:
            after, count = "", 0
            while rows := self.contacts.store.page(CONTACTS, after=after, limit=WRITE_BATCH):
                batch = [c for _, record in rows if (c := stored_contact(record))]
                self.contacts.put(batch)
                after, count = rows[-1][0], count + len(rows)
                self.progress(name, count, 0)
                yield None
            self.contacts.store.put(INDEX, COUNT, count)
            return count

        return self.run(name, steps(), lambda count: f"{count} contacts indexed")

    def replace_source(
        self, name: str, source: str, contacts: Iterable[Contact]
    ) -> Generator[object, None, int]:
        """Steps that make the contacts of ``source`` exactly ``contacts``: write them,
        then delete the ones of that source that are gone."""
        wanted = {c.uid: replace(c, source=source) for c in contacts}
        yield from self.write_steps(name, list(wanted.values()))
        yield from self.delete_missing(source, set(wanted))
        return len(wanted)

    def delete_missing(self, source: str, keep: set[str]) -> Iterator[object]:
        after = ""
        while rows := self.contacts.store.page(CONTACTS, after=after, limit=WRITE_BATCH):
            after = rows[-1][0]
            gone = [key for key, record in rows if record.get("source") == source and key not in keep]
            if gone:
                self.contacts.store.apply(self.contacts.deletions(gone))
            yield None


class ContactSources(Service):
    """Syncs each configured address book at start, every ``minutes`` and on request."""

    def __init__(self, sources: dict[str, Any], clock: Any, minutes: int) -> None:
        self.sources = sources
        self.clock = clock
        self.minutes = minutes
        self._loops: list[LoopingCall] = []
        self._running: dict[str, Deferred[Any]] = {}

    def startService(self) -> None:
        super().startService()
        for name in self.sources:
            loop = LoopingCall(self.sync, name)
            loop.clock = self.clock
            loop.start(self.minutes * 60, now=True)
            self._loops.append(loop)

    def stopService(self) -> Any:
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops = []
        return super().stopService()

    def sync(self, name: str) -> Deferred[Any] | None:
        """Start a sync of ``name`` unless one is running; failures are in the job status."""
        if name in self._running:
            return None
        done = self.sources[name].sync().addErrback(lambda _failure: None)
        if not done.called:
            self._running[name] = done

            def finished(result: object) -> object:
                del self._running[name]
                return result

            done.addBoth(finished)
        return done

    def sync_all(self) -> None:
        for name in self.sources:
            self.sync(name)
