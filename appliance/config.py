"""The appliance's start-up configuration (``config.ini``).

Only what must be known before the store opens lives here: where Asterisk,
the SMTP relay, the store and the company address books (CardDAV, LDAP, with
their credentials) are, and where to listen.  Everything a user or
admin changes at run time lives in the store instead.
"""

from __future__ import annotations

import configparser
import ipaddress
import zoneinfo
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from appliance.carddav import SYNC_MODES, CardDAVConfig
from appliance.ldapcontacts import LDAPConfig


class ConfigError(Exception):
    """A config file problem, worded as one line naming file, key and problem."""


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    def endpoint(self) -> str:
        """A Twisted server endpoint string."""
        host = self.host.replace(":", "\\:")
        return f"tcp:{self.port}:interface={host}:backlog={LISTEN_BACKLOG}"


@dataclass(frozen=True)
class WebLimits:
    """What one client may ask of the web server."""

    form_body: int = 64 * 1024
    """Bytes of a form post (login, settings): far above any real form."""
    upload_body: int = 5 * 1024 * 1024 + 64 * 1024
    """Bytes of an upload route's body (contact import): the file plus multipart overhead."""
    max_url: int = 4096
    header_deadline: float = 10.0
    body_deadline: float = 30.0
    """Seconds for a form's body to arrive once its headers are in."""
    upload_deadline: float = 300.0
    """The same for an upload route (a large file over a slow line)."""
    idle_timeout: float = 60.0
    per_address: int = 32
    total: int = 512
    trusted_proxies: frozenset[str] = frozenset()


DEFAULT_WEB_LIMITS = WebLimits()


@dataclass(frozen=True)
class AMIConfig:
    host: str
    port: int
    username: str
    secret: str

    def endpoint(self) -> str:
        """A Twisted client endpoint string."""
        host = self.host.replace(":", "\\:")
        return f"tcp:host={host}:port={self.port}:timeout=5"


@dataclass(frozen=True)
class SMTPConfig:
    host: str
    port: int
    starttls: str
    username: str
    password: str
    sender: str
    cafile: Path | None = None
    """PEM certificates to trust for the relay's STARTTLS; None: the system's."""


DEFAULT_RECORDINGS = "/var/lib/appliance-announcements"
"""Not below /var/lib/appliance: Asterisk must read it, the store must stay private."""


@dataclass(frozen=True)
class ApplianceConfig:
    path: Path
    ami: AMIConfig
    fastagi: Listen
    web: Listen
    smtp: SMTPConfig
    store: Path
    language: str
    web_limits: WebLimits = field(default_factory=WebLimits)
    carddav: CardDAVConfig | None = None
    ldap: LDAPConfig | None = None
    contacts_sync_minutes: int = 60
    timezone: str = ""
    """IANA zone of office hours (forward schedules); empty: the system's."""
    templates: Path = Path("/etc/appliance/xsl")
    """The admin's customised missed-call templates (override the shipped ones)."""
    recordings: Path = Path(DEFAULT_RECORDINGS)
    """Where the admin's own announcements are written (`appliance.recordings`)."""
    recordings_played_from: str = ""
    """The same directory as Asterisk sees it (another path in a chroot); "": the same."""


UPLOAD_OVERHEAD = 64 * 1024
"""Multipart headers around an uploaded file."""
LANGUAGES = ("de", "en")
LISTEN_BACKLOG = 1024
"""Twisted's default of 50 drops connects in bursts (bench/README.md: p99 over 1 s at 200 sessions)."""
STARTTLS = ("required", "off")


def load(path: str | Path) -> ApplianceConfig:
    """Read and check ``path``; the first problem raises `ConfigError`."""
    path = Path(path)
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read: {error}") from None
    except configparser.Error as error:
        first = str(error).splitlines()[0]
        raise ConfigError(f"{path}: not a valid INI file: {first}") from None
    read = _Reader(path, parser)
    store = Path(read.text("store", "path"))
    if not store.is_absolute():
        store = path.parent / store
    templates = Path(read.text("missed", "templates", default="/etc/appliance/xsl") or "/etc/appliance/xsl")
    if not templates.is_absolute():
        templates = path.parent / templates
    recordings = Path(read.text("announcements", "directory", default="") or DEFAULT_RECORDINGS)
    if not recordings.is_absolute():
        recordings = path.parent / recordings
    played_from = read.text("announcements", "played_from", default="")
    if played_from and not played_from.startswith("/"):
        raise ConfigError(f"{path}: [announcements] played_from: {played_from!r} is not an absolute path")
    cafile_text = read.text("smtp", "cafile", default="")
    cafile = None
    if cafile_text:
        cafile = Path(cafile_text) if Path(cafile_text).is_absolute() else path.parent / cafile_text
        if not cafile.is_file():
            raise ConfigError(f"{path}: [smtp] cafile: {str(cafile)!r} is not a file")
    starttls = read.choice("smtp", "starttls", STARTTLS, default="required")
    config = ApplianceConfig(
        path=path,
        ami=AMIConfig(
            host=read.host("ami", "host"),
            port=read.port("ami", "port"),
            username=read.text("ami", "username"),
            secret=read.text("ami", "secret"),
        ),
        fastagi=Listen(read.host("fastagi", "bind"), read.port("fastagi", "port", listen=True)),
        web=Listen(read.host("web", "bind"), read.port("web", "port", listen=True)),
        smtp=SMTPConfig(
            host=read.host("smtp", "host"),
            port=read.port("smtp", "port"),
            starttls=starttls,
            username=read.text("smtp", "username", default=""),
            password=read.text("smtp", "password", default=""),
            sender=read.text("smtp", "sender"),
            cafile=cafile,
        ),
        store=store,
        language=read.choice("appliance", "language", LANGUAGES, default="de"),
        web_limits=WebLimits(
            upload_body=read.size_mb("web", "max_upload_mb", default=5) + UPLOAD_OVERHEAD,
            trusted_proxies=read.addresses("web", "trusted_proxies"),
        ),
        timezone=read.zone("appliance", "timezone"),
        templates=templates,
        recordings=recordings,
        recordings_played_from=played_from,
    )
    config = replace(
        config,
        carddav=_carddav(read) if parser.has_section("carddav") else None,
        ldap=_ldap(read) if parser.has_section("ldap") else None,
        contacts_sync_minutes=read.number("contacts", "sync_minutes", 1, 10080, default=60),
    )
    if config.smtp.username and config.smtp.starttls != "required":
        raise ConfigError(
            f"{path}: [smtp] starttls: must be 'required' when a username is set "
            "(credentials are only ever sent over TLS)"
        )
    if "@" not in config.smtp.sender:
        raise ConfigError(f"{path}: [smtp] sender: {config.smtp.sender!r} is not an e-mail address")
    return config


def _carddav(read: _Reader) -> CardDAVConfig:
    url = read.text("carddav", "url")
    if not url.startswith(("http://", "https://")):
        raise read.fail("carddav", "url", f"{url!r} is not an http:// or https:// URL")
    username = read.text("carddav", "username", default="")
    if username and not url.startswith("https://") and not _loopback(url):
        raise read.fail("carddav", "url", "credentials are only sent over https:// (or to this machine)")
    sync = read.choice("carddav", "sync", SYNC_MODES, default="auto")
    return CardDAVConfig(url, username, read.text("carddav", "password", default=""), sync)


def _ldap(read: _Reader) -> LDAPConfig:
    uri = read.text("ldap", "uri")
    if not uri.startswith(("ldap://", "ldaps://")):
        raise read.fail("ldap", "uri", f"{uri!r} is not an ldap:// or ldaps:// URI")
    defaults = LDAPConfig(uri, "")
    numbers = read.text("ldap", "attr_numbers", default=" ".join(defaults.numbers)).split()
    return LDAPConfig(
        uri=uri,
        base=read.text("ldap", "base"),
        bind_dn=read.text("ldap", "bind_dn", default=""),
        password=read.text("ldap", "password", default=""),
        filter=read.text("ldap", "filter", default=defaults.filter),
        name=read.text("ldap", "attr_name", default=defaults.name),
        numbers=tuple(numbers),
        email=read.text("ldap", "attr_email", default=defaults.email),
        organization=read.text("ldap", "attr_organization", default=defaults.organization),
    )


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host == "localhost" or host.startswith("127.") or host == "::1"


class _Reader:
    def __init__(self, path: Path, parser: configparser.ConfigParser) -> None:
        self.path = path
        self.parser = parser

    def _fail(self, section: str, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: [{section}] {key}: {problem}")

    def text(self, section: str, key: str, default: str | None = None) -> str:
        if not self.parser.has_section(section):
            if default is not None:
                return default
            raise ConfigError(f"{self.path}: section [{section}] is missing")
        value = self.parser.get(section, key, fallback=None)
        if value is None:
            if default is not None:
                return default
            raise self._fail(section, key, "is missing")
        value = value.strip()
        if not value and default is None:
            raise self._fail(section, key, "is empty")
        return value

    def fail(self, section: str, key: str, problem: str) -> ConfigError:
        return self._fail(section, key, problem)

    def number(self, section: str, key: str, lowest: int, highest: int, default: int) -> int:
        if not self.parser.has_section(section):
            return default
        raw = self.text(section, key, default=str(default))
        if not raw.isdigit() or not lowest <= int(raw) <= highest:
            raise self._fail(section, key, f"{raw!r} is not a whole number from {lowest} to {highest}")
        return int(raw)

    def port(self, section: str, key: str, listen: bool = False) -> int:
        """A port; one we listen on may be 0, meaning any free port."""
        raw = self.text(section, key)
        lowest = 0 if listen else 1
        if not raw.isdigit() or not lowest <= int(raw) <= 65535:
            raise self._fail(section, key, f"{raw!r} is not a port number ({lowest} to 65535)")
        return int(raw)

    def size_mb(self, section: str, key: str, default: int) -> int:
        """Whole megabytes (1 to 1024) as bytes."""
        raw = self.text(section, key, default=str(default))
        if not raw.isdigit() or not 1 <= int(raw) <= 1024:
            raise self._fail(section, key, f"{raw!r} is not a size in MB (1 to 1024)")
        return int(raw) * 1024 * 1024

    def addresses(self, section: str, key: str) -> frozenset[str]:
        """A comma-separated list of IP addresses, possibly empty."""
        raw = self.text(section, key, default="")
        found = set()
        for item in filter(None, (part.strip() for part in raw.split(","))):
            try:
                found.add(str(ipaddress.ip_address(item)))
            except ValueError:
                raise self._fail(section, key, f"{item!r} is not an IP address") from None
        return frozenset(found)

    def host(self, section: str, key: str) -> str:
        raw = self.text(section, key)
        try:
            ipaddress.ip_address(raw)
        except ValueError:
            if raw != "localhost" and not _is_hostname(raw):
                raise self._fail(section, key, f"{raw!r} is not an IP address or host name") from None
        return raw

    def zone(self, section: str, key: str) -> str:
        """An IANA time zone name such as Europe/Berlin, or empty for the system's."""
        raw = self.text(section, key, default="")
        if raw:
            try:
                zoneinfo.ZoneInfo(raw)
            except (ValueError, zoneinfo.ZoneInfoNotFoundError):
                raise self._fail(section, key, f"{raw!r} is not a time zone (e.g. Europe/Berlin)") from None
        return raw

    def choice(self, section: str, key: str, allowed: tuple[str, ...], default: str) -> str:
        raw = self.text(section, key, default=default).lower()
        if raw not in allowed:
            raise self._fail(section, key, f"{raw!r} is not one of {', '.join(allowed)}")
        return raw


def _is_hostname(name: str) -> bool:
    labels = name.rstrip(".").split(".")
    return all(
        label and len(label) <= 63 and label.replace("-", "").isalnum() and not label.startswith("-")
        for label in labels
    )
