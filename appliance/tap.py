"""``twistd appliance``: the one place that reads the config and builds the
service tree, handing every feature its dependencies."""

from __future__ import annotations

import zoneinfo
from typing import Any

from twisted.application.internet import StreamServerEndpointService, backoffPolicy
from twisted.application.service import IService, MultiService
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python import usage

from appliance import config as configuration
from appliance import pickup
from appliance.announcements import Announcements
from appliance.asterisk.amiservice import AMIService
from appliance.asterisk.eventfilter import excludeEvents
from appliance.asterisk.fastagi import AGIHandler, FastAGIFactory
from appliance.blf import BLFService
from appliance.callback.service import CallbackService
from appliance.callwaiting import CallWaiting
from appliance.carddav import CardDAVSource, http_client
from appliance.contacts import ContactDirectory
from appliance.contactsync import ContactJobs, ContactSources
from appliance.devices import Devices
from appliance.dialplan import CallExtensions, CallRouter, FeatureCodes
from appliance.directory import Directory
from appliance.forwarding.holidayfeed import HolidayFeed, fetch_calendar
from appliance.forwarding.records import Forwards
from appliance.forwarding.scheduled import ScheduledForwarding, Schedules
from appliance.groups import GroupCursors
from appliance.holding import HoldingStore
from appliance.ldapcontacts import LDAPSource
from appliance.mail import Outbox, SMTPRelay
from appliance.metering import MeteredRoute
from appliance.metrics import Metrics
from appliance.missed.language import with_mail_languages
from appliance.missed.render import Renderer
from appliance.missed.service import MissedCallService
from appliance.numbers import migrate_old_plan, plan_from
from appliance.pbx import PBXModel, PBXService
from appliance.pbxusers import EndpointSync
from appliance.recordings import Recordings
from appliance.settings import PHONE_AREA, PHONE_COUNTRY, SCHEMA, Settings
from appliance.slices import reactor_cooperator
from appliance.store import SQLiteStore, StoreError
from appliance.systemd import ReadyNotifier
from appliance.web import WebApp
from appliance.web.api import ApiPages
from appliance.web.pages.announcements import AnnouncementPages
from appliance.web.pages.callbacks import CallbackPages
from appliance.web.pages.contacts import ContactPages
from appliance.web.pages.forwards import ForwardPages
from appliance.web.pages.groups import GroupPages
from appliance.web.pages.holidays import HolidayPages
from appliance.web.pages.journal import JournalPages, NotificationPages
from appliance.web.pages.metrics import MetricsPage
from appliance.web.pages.schedules import SchedulePages
from appliance.web.pages.templates import TemplatePages
from appliance.web.pages.tokens import TokenPages
from appliance.web.tokens import ApiTokens, RateLimit

log = Logger()

AMI_MAX_RETRY_SECONDS = 5.0
"""After an Asterisk restart the features should be back within seconds."""


AMI_KEEPALIVE_SECONDS = 5.0
"""Ping this often and wait this long for Pong: a dead link is noticed within 10 s."""


class Options(usage.Options):
    optParameters = [
        ["config", "c", "/etc/appliance/config.ini", "The appliance's config.ini."],
    ]


class ListenOrStop(StreamServerEndpointService):
    """Listen, or stop start-up with one line: a port that cannot be bound must not
    leave a process running that serves nothing (twistd exits non-zero, and
    systemd's restart limits take over)."""

    def __init__(self, section: str, endpoint: Any, factory: Any) -> None:
        super().__init__(endpoint, factory)
        self.section = section

    def privilegedStartService(self) -> None:
        self._raiseSynchronously = True
        try:
            super().privilegedStartService()
        except CannotListenError as error:
            raise SystemExit(f"appliance: {self.section}: cannot listen: {error}") from None


class Appliance(MultiService):
    """The running appliance; its parts stay reachable for tests and tools."""

    def __init__(self, config: configuration.ApplianceConfig, store: SQLiteStore, reactor: Any) -> None:
        super().__init__()
        self.config = config
        self.metrics = Metrics(reactor)
        """Handed to each feature where it is built; they report to it (`appliance.metering`)."""
        self.store: HoldingStore = HoldingStore(store, reactor, metrics=self.metrics)
        """Writes the disk refuses are kept and written later (`appliance.holding`)."""
        store = self.store  # type: ignore[assignment]
        self.renderer = Renderer(custom=config.templates)
        self.settings = Settings(store, with_mail_languages(SCHEMA, lambda: self.renderer.languages))
        for problem in self.settings.stored_problems():
            log.error("{problem}", problem=problem)
        self.ami = AMIService.fromString(
            reactor,
            config.ami.endpoint(),
            config.ami.username,
            config.ami.secret,
            retryPolicy=_retry_policy(),
            keepalive=AMI_KEEPALIVE_SECONDS,
        )
        self.ami.setServiceParent(self)
        self.ami.addConnectedHook(lambda _protocol: self.metrics.ami_login())
        excludeEvents(self.ami)
        self.pbx = PBXModel(clock=reactor)
        PBXService(self.ami, self.pbx).setServiceParent(self)
        self.directory = Directory(store)
        self.endpoint_sync = EndpointSync(self.ami, self.pbx, self.directory, self.settings, reactor)
        self.endpoint_sync.setServiceParent(self)
        self.devices = Devices(self.directory, self.pbx)
        self.call_waiting = CallWaiting(
            store,
            self.settings,
            self.pbx,
            reactor,
            lambda channel, cause: self.ami.sendAction("Hangup", Channel=channel, Cause=cause),
            language_of=self._language_of,
            devices=self.devices,
        )
        self.schedules = Schedules(store)
        self.recordings = Recordings(
            store,
            config.recordings,
            config.recordings_played_from,
            lambda function, *args: deferToThreadPool(reactor, reactor.getThreadPool(), function, *args),
        )
        self.announcements = Announcements(config.language, self.recordings)
        """What a forward may play instead of ringing a number (`appliance.announcements`)."""
        holiday_http = http_client(reactor)
        self.holiday_feed = HolidayFeed(
            store, self.settings, lambda url: fetch_calendar(holiday_http, reactor, url), reactor
        )
        self.holiday_feed.setServiceParent(self)
        self.forwarding = ScheduledForwarding(
            Forwards(store, self.announcements.known),
            self.settings,
            self.directory,
            self.pbx,
            language=config.language,
            schedules=self.schedules,
            shared_holidays=self.holiday_feed.calendar,
            clock=reactor,
            zone=zoneinfo.ZoneInfo(config.timezone) if config.timezone else None,
            busy_rule=self.call_waiting.unavailable,
            metrics=self.metrics,
            reach=self.call_waiting.reach,
        )
        self.call_extensions = CallExtensions()
        """Where the features plug into the call route (`appliance.dialplan`)."""
        self.call_extensions.resolve_endpoints(self.devices.to_ring)
        self.router = CallRouter(
            self.pbx,
            forwarding=self.forwarding,
            waiting=self.call_waiting,
            extensions=self.call_extensions,
            cursors=GroupCursors(store),
            clock=reactor,
            announcements=self.announcements,
        )
        self.call_extensions.on_finished(lambda outcome: self.metrics.call_routed(outcome.origin))
        self.feature_codes = FeatureCodes()
        self.forwarding.register_codes(self.feature_codes)
        self.call_waiting.register_codes(self.feature_codes)
        migrate_old_plan(store, self.settings)
        self.contacts = ContactDirectory(store, plan=lambda: plan_from(self.settings.get))
        self.contact_jobs = ContactJobs(self.contacts, reactor_cooperator(reactor), reactor)
        self.settings.subscribe(self._plan_changed, [PHONE_COUNTRY, PHONE_AREA])
        if self.contacts.needs_index():  # contacts stored before the index existed
            reactor.callWhenRunning(self._plan_changed, "", None)
        sources: dict[str, Any] = {}
        if config.carddav is not None:
            sources["carddav"] = CardDAVSource(config.carddav, self.contact_jobs, http_client(reactor))
        if config.ldap is not None:
            pool = reactor.getThreadPool()
            sources["ldap"] = LDAPSource(
                config.ldap, self.contact_jobs, lambda f, *a: deferToThreadPool(reactor, pool, f, *a)
            )
        self.contact_sources = ContactSources(sources, reactor, config.contacts_sync_minutes)
        self.contact_sources.setServiceParent(self)
        self.outbox = Outbox(store, SMTPRelay(config.smtp, reactor).send, reactor, metrics=self.metrics)
        self.outbox.setServiceParent(self)
        self.metrics.watch_outbox(self.outbox.entries)
        self.missed = MissedCallService(
            self.pbx,
            self.settings,
            self.directory,
            self.contacts,
            self.outbox,
            reactor,
            config.smtp.sender,
            renderer=self.renderer,
            language=config.language,
        )
        self.missed.setServiceParent(self)
        self.feature_codes.register(pickup.CODE, pickup.directed_pickup)
        self.callbacks = CallbackService(
            store,
            self.settings,
            self.pbx,
            self.ami,
            self.directory,
            reactor,
            language=config.language,
            outbox=self.outbox,
            sender=config.smtp.sender,
            devices=self.devices,
            metrics=self.metrics,
        )
        self.callbacks.attach(self.call_extensions, self.feature_codes)
        self.callbacks.setServiceParent(self)
        self.blf = BLFService(
            self.ami,
            self.pbx,
            store,
            self.forwarding.active_forwards,
            lambda: [u.extension for u in self.directory.users()],
            reactor,
            groups=self.directory.group_numbers,
        )
        self.blf.setServiceParent(self)
        self.routes: dict[str, AGIHandler] = {
            "call": MeteredRoute("call", self.router, self.metrics),
            "feature": MeteredRoute("feature", self.feature_codes, self.metrics),
        }
        self.fastagi = ListenOrStop(
            "[fastagi]",
            serverFromString(reactor, config.fastagi.endpoint()),
            FastAGIFactory(self.routes, reactor),
        )
        self.fastagi.setServiceParent(self)
        self.web = WebApp(
            store,
            self.settings,
            self.directory,
            reactor,
            language=config.language,
            limits=config.web_limits,
            metrics=self.metrics,
            announcements=self.announcements,
        )
        self.web.add(ForwardPages(self.forwarding.forwards, self.directory))
        self.web.add(
            GroupPages(
                self.directory, self.forwarding.forwards, self.schedules, self.pbx, self.devices.presence
            )
        )
        self.web.add(CallbackPages(self.callbacks, self.directory, self.call_waiting))
        self.web.on_login(self.missed.user_logged_in)
        self.web.add(JournalPages(self.missed.journal, self.directory, self.missed.user_logged_in))
        self.web.add(TemplatePages(self.renderer))
        self.web.add(NotificationPages(self.missed.journal, self.directory))
        self.web.add(ContactPages(self.contacts, self.contact_jobs, self.contact_sources))
        self.web.alerts.append(self._store_alerts)
        self.web.registered = self._registered
        self.api_tokens = ApiTokens(store, reactor)
        self.web.add(MetricsPage(self.metrics, self.api_tokens))
        self.web.add(TokenPages(self.api_tokens))
        self.web.add(SchedulePages(self.forwarding.forwards, self.schedules, self.directory))
        self.web.add(HolidayPages(self.holiday_feed, self.settings))
        self.web.add(AnnouncementPages(self.recordings, self.announcements, self.forwarding.forwards))
        api_limits = RateLimit(reactor)
        self.web.add(
            ApiPages(
                self.api_tokens,
                api_limits,
                self.web.throttle,
                self.directory,
                self.forwarding.forwards,
                self.callbacks,
                self.missed.journal,
                self.pbx,
                self.ami,
                self.schedules,
                self.call_waiting,
            )
        )
        self.web_service = ListenOrStop(
            "[web]", serverFromString(reactor, config.web.endpoint()), self.web.site()
        )
        self.web_service.setServiceParent(self)
        ReadyNotifier(reactor).setServiceParent(self)  # last: after every listening service

    def _store_alerts(self) -> list[str]:
        """The admin banner: held writes, then every bad stored value by namespace/key."""
        held = self.store.problem()
        others = [
            f"unreadable store value {line}"
            for line in self.store.unreadable.problems()
            if not line.startswith("settings/")  # the settings check names those
        ]
        return ([held] if held else []) + self.settings.stored_problems() + others

    def _registered(self, endpoint: str) -> bool | None:
        """The users page shows which of a user's phones are logged in."""
        if not self.pbx.synced or endpoint not in self.pbx.endpoints:
            return None
        return self.pbx.endpoint(endpoint).registered

    def _plan_changed(self, name: str, value: object) -> None:
        """Contacts are indexed by their E.164 numbers: a new country or area code
        re-indexes them (in slices), as do contacts from before the index."""
        self.contact_jobs.reindex().addErrback(lambda failure: None)

    def _language_of(self, line: str) -> str:
        user = self.directory.user(line) if line else None
        return (user.language if user is not None else "") or self.config.language

    def stopService(self) -> Any:
        def close(result: object) -> object:
            self.store.close()
            return result

        return super().stopService().addBoth(close)


def _retry_policy() -> Any:
    return backoffPolicy(initialDelay=0.5, maxDelay=AMI_MAX_RETRY_SECONDS)


def build(config_path: str, reactor: Any) -> Appliance:
    """Load the config and open the store; problems raise `ConfigError`."""
    config = configuration.load(config_path)
    try:
        config.store.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        store = SQLiteStore(config.store)
    except OSError as error:
        raise configuration.ConfigError(f"{config.path}: [store] path: {error}") from None
    except StoreError as error:
        raise configuration.ConfigError(f"{config.path}: [store] path: {error}") from None
    return Appliance(config, store, reactor)


def makeService(options: Options, reactor: Any = None) -> IService:
    """Called by twistd; a bad config stops start-up with one clear line."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    try:
        return build(options["config"], reactor)
    except configuration.ConfigError as error:
        raise SystemExit(f"appliance: {error}") from None
