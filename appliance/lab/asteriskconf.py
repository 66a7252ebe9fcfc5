"""Asterisk configuration for one lab instance, rendered as text.

Phones are PJSIP endpoints without authentication that register dynamically
(loopback only), so a sipp scenario can log a phone in and out.  With desk
phones, some extensions also take real SIP phones on another address, with
passwords, and the others answer only to loopback.  A trunk
endpoint named ``trunk`` stands for the outside world: calls from it are
external, their caller ID taken from P-Asserted-Identity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appliance.lab.lab import LabPorts

DEMO_EXTENSIONS: tuple[str, ...] = tuple(
    str(n) for block in (100, 200, 300) for n in range(block, block + 10)
)

MODULES_NOT_LOADED = (
    "chan_dahdi",
    "chan_iax2",
    "chan_mobile",
    "chan_unistim",
    "chan_motif",
    "chan_console",
    "chan_audiosocket",
    "chan_websocket",
    "chan_rtp",
    "res_xmpp",
    "res_calendar",
    "res_config_ldap",
    "res_config_mysql",
    "res_config_odbc",
    "res_config_pgsql",
    "res_config_sqlite3",
    "res_odbc",
    "res_pjsip_phoneprov_provider",
    "res_phoneprov",
    "res_prometheus",
    "res_hep",
    "res_hep_pjsip",
    "res_hep_rtcp",
    "res_corosync",
    "res_snmp",
    "res_fax",
    "res_fax_spandsp",
    "res_stir_shaken",
    "res_geolocation",
    "cdr_odbc",
    "cdr_pgsql",
    "cdr_tds",
    "cdr_radius",
    "cdr_sqlite3_custom",
    "cdr_beanstalkd",
    "cdr_custom",
    "cdr_csv",
    "cdr_manager",
    "cdr_adaptive_odbc",
    "cel_odbc",
    "cel_pgsql",
    "cel_tds",
    "cel_radius",
    "cel_sqlite3_custom",
    "cel_beanstalkd",
    "cel_custom",
    "cel_manager",
    "pbx_lua",
    "pbx_ael",
    "pbx_dundi",
    "pbx_realtime",
    "app_voicemail_imap",
    "app_voicemail_odbc",
    "res_aeap",
    "res_speech_aeap",
    "res_ari_websockets",
    "res_http_media_cache",
    "res_pjsip_stir_shaken",
    "res_smdi",
    "res_statsd",
    "res_mwi_external",
    "res_mwi_external_ami",
    "res_ael_share",
    "res_pjsip_geolocation",
    "res_odbc_transaction",
    "res_calendar_icalendar",
    "res_calendar_exchange",
    "res_calendar_ews",
    "res_calendar_caldav",
    "res_resolver_unbound",
    "res_stun_monitor",
    "app_festival",
    "app_alarmreceiver",
    "app_amd",
    "app_minivm",
    "app_adsiprog",
    "app_getcpeid",
    "res_adsi",
)


@dataclass(frozen=True)
class DeskPhones:
    """Real SIP phones (a softphone on the desk) on another address of this machine:
    the extensions that may register there, each with its password.  Every other
    endpoint then answers only to the lab's own address, where the sipp phones are."""

    address: str
    passwords: Mapping[str, str]


def render(
    *,
    confdir: str,
    instance: str,
    ports: LabPorts,
    extensions: Sequence[str],
    ami_user: str,
    ami_secret: str,
    desk: DeskPhones | None = None,
) -> dict[str, str]:
    """Every config file of the instance, by file name."""
    host = ports.host
    lab = "appliance-lab"
    files = {
        "asterisk.conf": f"""\
[directories]
astetcdir => {confdir}
astmoddir => /usr/lib/x86_64-linux-gnu/asterisk/modules
astvarlibdir => /var/lib/asterisk
astdbdir => /var/lib/{lab}/{instance}
astkeydir => /var/lib/{lab}/{instance}
astdatadir => /usr/share/asterisk
astagidir => /usr/share/asterisk/agi-bin
astspooldir => /var/spool/{lab}/{instance}
astrundir => /run/{lab}/{instance}
astlogdir => /var/log/{lab}/{instance}
astcachedir => /var/cache/{lab}/{instance}
astsbindir => /usr/sbin

[options]
systemname = {lab}-{instance}
defaultlanguage = en
hideconnect = yes
""",
        "modules.conf": "[modules]\nautoload = yes\n"
        + "".join(f"noload => {name}.so\n" for name in MODULES_NOT_LOADED),
        "logger.conf": """\
[general]
dateformat = %F %T.%3q

[logfiles]
messages => notice,warning,error,verbose(3)
""",
        "manager.conf": f"""\
[general]
enabled = yes
bindaddr = {host}
port = {ports.ami}
displayconnects = no

[{ami_user}]
secret = {ami_secret}
deny = 0.0.0.0/0.0.0.0
permit = 127.0.0.0/255.0.0.0
read = all
write = all
writetimeout = 5000
""",
        "rtp.conf": f"[general]\nrtpstart = {ports.rtp_start}\nrtpend = {ports.rtp_end}\n",
        "pjsip.conf": _pjsip(host, ports.sip, extensions, desk),
        "extensions.conf": f"""\
[general]
static = yes
writeprotect = yes

[globals]
APPLIANCE_AGI = {host}:{ports.fastagi}

#include appliance.conf

[phones]
; Lab only: ccss<number> dials <number> with Asterisk's own call completion
; (bench/callback.py's baseline); every other number goes to the appliance.
exten => _ccssX.,1,Goto(lab-ccss,${{EXTEN:4}},1)
include => appliance-phones

[from-trunk]
include => appliance-trunk
"""
        + _CCSS_DIALPLAN,
        "features.conf": """\
[general]
transferdigittimeout = 3

[featuremap]
blindxfer = #1
atxfer = *2
""",
        "indications.conf": "[general]\ncountry = de\n\n"
        "[de]\ndescription = Germany\nringcadence = 1000,4000\n"
        "dial = 425\nbusy = 425/480,0/480\nring = 425/1000,0/4000\n"
        "congestion = 425/240,0/240\ncallwaiting = !425/200,!0/200,!425/200,!0/5000\n"
        "dialrecall = !425/100,!0/100,!425/100,!0/100,!425/100,!0/100,425\n"
        "record = 1400/80,0/15000\ninfo = 950/330,1400/330,1800/330,0/1000\n",
        "cli.conf": "[startup_commands]\n",
        "ccss.conf": "[general]\n",
        "cdr.conf": "[general]\nenable = no\n",
        "cel.conf": "[general]\nenable = no\n",
        "acl.conf": "",
        "udptl.conf": "[general]\n",
        "stasis.conf": "",
        "pjproject.conf": "[startup]\nlog_level = 1\n",
        "http.conf": "[general]\nenabled = no\n",
        "ari.conf": "[general]\nenabled = no\n",
        "hep.conf": "[general]\nenabled = no\n",
        "sorcery.conf": "",
        "res_parking.conf": "[general]\n",
        "confbridge.conf": "",
        "smdi.conf": "",
        "dnsmgr.conf": "[general]\nenable = no\n",
        "pjsip_wizard.conf": "",
        "queues.conf": "[general]\n",
        "agents.conf": "",
        "followme.conf": "[general]\n",
        "voicemail.conf": "[general]\n",
        "pjsip_notify.conf": "",
        "cli_aliases.conf": "",
        "websocket_client.conf": "",
    }
    return files


_CCSS_DIALPLAN = """
; Asterisk's CCSS with the generic agent and monitor, set per call.  chan_pjsip
; offers no call completion itself, so the callee channel's pre-dial handler
; checks the device state and fails the call as busy (cause 17); Dial then
; offers CCBS, which the caller takes at once.
[lab-ccss]
exten => _X.,1,Set(CALLCOMPLETION(cc_agent_policy)=generic)
 same => n,Dial(PJSIP/${EXTEN},20,b(lab-ccss-predial^s^1(${EXTEN})))
 same => n,Answer()
 same => n,CallCompletionRequest()
 same => n,Hangup()

[lab-ccss-predial]
exten => s,1,Set(CALLCOMPLETION(cc_monitor_policy)=generic)
 same => n,GotoIf($["${DEVICE_STATE(PJSIP/${ARG1})}" = "NOT_INUSE"]?free)
 same => n,Hangup(17)
 same => n(free),Return()
"""


def _pjsip(host: str, port: int, extensions: Sequence[str], desk: DeskPhones | None) -> str:
    loopback_only = "" if desk is None else f"deny = 0.0.0.0/0.0.0.0\npermit = {host}/255.255.255.255\n"
    parts = [
        f"""\
[global]
type = global
endpoint_identifier_order = username,ip,anonymous
user_agent = appliance-lab

[transport-udp]
type = transport
protocol = udp
bind = {host}:{port}

[phone](!)
type = endpoint
transport = transport-udp
context = phones
disallow = all
allow = ulaw,alaw,gsm
direct_media = no
rtp_symmetric = yes
force_rport = yes
rewrite_contact = no
dtmf_mode = rfc4733
send_pai = yes
allow_transfer = yes

[phone-aor](!)
type = aor
max_contacts = 1
remove_existing = yes
default_expiration = 3600
minimum_expiration = 1
qualify_frequency = 0

[trunk]
type = endpoint
transport = transport-udp
context = from-trunk
disallow = all
allow = ulaw,alaw,gsm
direct_media = no
rtp_symmetric = yes
trust_id_inbound = yes
dtmf_mode = rfc4733
aors = trunk
{loopback_only}
[trunk]
type = aor
max_contacts = 5
""",
    ]
    if desk is not None:
        parts.append(f"\n[transport-desk]\ntype = transport\nprotocol = udp\nbind = {desk.address}:{port}\n")
    for ext in extensions:
        parts.append(f'\n[{ext}](phone)\naors = {ext}\ncallerid = "Lab {ext}" <{ext}>\n')
        if desk is not None and ext in desk.passwords:
            parts.append(f"transport = transport-desk\nauth = {ext}-auth\n")
        else:
            parts.append(loopback_only)
        parts.append(f"\n[{ext}](phone-aor)\n")
        if desk is not None and ext in desk.passwords:
            secret = desk.passwords[ext]
            parts.append(f"\n[{ext}-auth]\ntype = auth\nauth_type = userpass\n")
            parts.append(f"username = {ext}\npassword = {secret}\n")
    return "".join(parts)
