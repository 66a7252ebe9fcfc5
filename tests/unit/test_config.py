"""config.ini: a good file loads; each bad value is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import ConfigError, load

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.ini"
    path.write_text(text)
    return path


def shipped(**replace: str) -> str:
    """The shipped config.ini with some ``key = value`` lines replaced."""
    lines = []
    for line in (REPO / "config.ini").read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if "=" in line and key in replace:
            line = f"{key} = {replace[key]}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_shipped_config_loads(tmp_path: Path) -> None:
    """The config.ini in the repository is valid and relative store paths follow the file."""
    config = load(write(tmp_path, shipped()))
    assert config.ami.port == 5038
    assert config.fastagi.endpoint() == "tcp:4573:interface=127.0.0.1:backlog=1024"
    assert config.store == tmp_path / "var" / "appliance.sqlite3"
    assert config.language == "de"


def test_missing_file_names_it(tmp_path: Path) -> None:
    """A missing file is reported with its path."""
    with pytest.raises(ConfigError, match=r"nope\.ini: file not found"):
        load(tmp_path / "nope.ini")


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        ({"port": "70000"}, r"\[ami\] port: '70000' is not a port number"),
        ({"host": "not a host!"}, r"\[ami\] host: 'not a host!' is not an IP address or host name"),
        ({"secret": ""}, r"\[ami\] secret: is empty"),
        ({"language": "fr"}, r"\[appliance\] language: 'fr' is not one of de, en"),
        ({"starttls": "maybe"}, r"\[smtp\] starttls: 'maybe' is not one of required, off"),
        ({"username": "bob"}, r"\[smtp\] starttls: must be 'required' when a username is set"),
        ({"sender": "nobody"}, r"\[smtp\] sender: 'nobody' is not an e-mail address"),
    ],
)
def test_bad_value_is_one_clear_line(tmp_path: Path, replace: dict[str, str], message: str) -> None:
    """Each bad value names the file, section, key and problem in one line."""
    path = write(tmp_path, shipped(**replace))
    with pytest.raises(ConfigError, match=message) as caught:
        load(path)
    assert str(caught.value).startswith(str(path))
    assert "\n" not in str(caught.value)


def test_missing_section(tmp_path: Path) -> None:
    """A missing section is named."""
    text = shipped().replace("[fastagi]", "[fastagix]")
    with pytest.raises(ConfigError, match=r"section \[fastagi\] is missing"):
        load(write(tmp_path, text))


def test_not_ini(tmp_path: Path) -> None:
    """A file that is not INI at all is refused in one line."""
    with pytest.raises(ConfigError, match="not a valid INI file"):
        load(write(tmp_path, "port = 1\n"))


def test_address_books(tmp_path: Path) -> None:
    """[carddav] and [ldap] are read with their defaults; without them there are none."""
    assert load(write(tmp_path, shipped())).carddav is None
    text = shipped() + (
        "[carddav]\nurl = https://dav.example.org/book/\nusername = office\npassword = s3cret\n"
        "[ldap]\nuri = ldaps://ldap.example.org\nbase = ou=people,dc=example,dc=org\n"
        "attr_numbers = telephoneNumber ipPhone\n"
    )
    config = load(write(tmp_path, text))
    assert config.carddav is not None and config.carddav.username == "office"
    assert config.ldap is not None and config.ldap.numbers == ("telephoneNumber", "ipPhone")
    assert config.ldap.filter == "(objectClass=inetOrgPerson)" and config.contacts_sync_minutes == 60


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("[carddav]\nurl = ftp://x/\n", r"\[carddav\] url: 'ftp://x/' is not an http:// or https:// URL"),
        (
            "[carddav]\nurl = http://dav.example.org/\nusername = u\n",
            r"\[carddav\] url: credentials are only sent over https://",
        ),
        ("[ldap]\nuri = ldaps://x\n", r"\[ldap\] base: is missing"),
        (
            "[ldap]\nuri = http://x\nbase = dc=x\n",
            r"\[ldap\] uri: 'http://x' is not an ldap:// or ldaps:// URI",
        ),
    ],
)
def test_bad_address_book_is_one_clear_line(tmp_path: Path, section: str, message: str) -> None:
    """A bad address-book setting stops start-up with file, section, key and problem."""
    with pytest.raises(ConfigError, match=message):
        load(write(tmp_path, shipped() + section))


def test_bad_sync_interval(tmp_path: Path) -> None:
    """[contacts] sync_minutes must be a whole number of minutes."""
    with pytest.raises(ConfigError, match=r"\[contacts\] sync_minutes: '0' is not a whole number from 1"):
        load(write(tmp_path, shipped(sync_minutes="0")))


def test_templates_directory_and_cafile(tmp_path: Path) -> None:
    """[missed] templates and [smtp] cafile: relative paths follow the file; the
    templates default is /etc/appliance/xsl; a missing cafile is refused."""
    (tmp_path / "ca.pem").write_text("x")
    config = load(write(tmp_path, shipped(templates="custom-xsl", cafile="ca.pem")))
    assert config.templates == tmp_path / "custom-xsl"
    assert config.smtp.cafile == tmp_path / "ca.pem"
    text = shipped().replace("templates = var/xsl\n", "")
    assert load(write(tmp_path, text)).templates == Path("/etc/appliance/xsl")
    with pytest.raises(ConfigError, match=r"\[smtp\] cafile: .*nothere.pem' is not a file"):
        load(write(tmp_path, shipped(cafile="nothere.pem")))
