"""The AGI command language: quoting, reply parsing, errors and the command helpers.

Transport-free, so the command helpers can run over a fake session in tests
and the FastAGI server (`appliance.asterisk.fastagi`) stays about the
connection.  Quoting follows Asterisk's C{parse_args} (res_agi.c): words split
on unquoted blanks, a double quote toggles quoting, a backslash makes the next
character literal; CR, LF and NUL cannot be written and are refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from twisted.internet.defer import Deferred

#: res_agi reads a command into a 2048-byte buffer (AGI_BUF_LEN) with fgets;
#: a longer line is cut and the rest runs as a *second* command.
MAX_COMMAND_BYTES = 2047  # including the trailing newline

#: The last line of res_agi's multi-line 520 usage reply.
USAGE_END = "520 End of proper usage."
#: A reply line: three-digit status, a space, the rest.
STATUS_LINE = re.compile(r"^(\d{3}) (.*)$")
_RESULT = re.compile(r"^result=(\S*)(.*)$")
# After the result: an optional " (data)" then " key=value" pairs.  The data
# part is greedy so a value containing ")" stays whole; extras may not hold
# parentheses so "(x) endpos=5)" parses as data "x) endpos=5".
_AFTER_RESULT = re.compile(r"^(?: \((.*)\))?((?: [^\s=()]+=[^\s()]*)*)$")
_EXTRA = re.compile(r" ([^\s=()]+)=([^\s()]*)")
_INT = re.compile(r"^-?\d+$")


# Errors ---------------------------------------------------------------------


class AGIError(Exception):
    """Base class: an AGI command or connection did not do what was asked."""


class AGIResponseError(AGIError):
    """Asterisk answered a command with an error code (5xx)."""

    def __init__(self, code: int, text: str, command: str = "") -> None:
        super().__init__(code, text, command)
        self.code = code
        self.text = text
        self.command = command

    def __str__(self) -> str:
        return f"{self.code} {self.text} (command: {self.command!r})"


class AGIInvalidCommand(AGIResponseError):
    """510: Asterisk does not know the command."""


class AGIChannelDead(AGIResponseError):
    """511: the channel hung up; only a few commands still work."""


class AGIUsageError(AGIResponseError):
    """520: wrong arguments; C{usage} holds Asterisk's usage text."""

    def __init__(self, code: int, text: str, command: str = "", usage: str = "") -> None:
        super().__init__(code, text, command)
        self.usage = usage


class AGICommandError(AGIError):
    """A 200 reply whose result means failure (usually C{result=-1})."""

    def __init__(self, response: AGIResponse, command: str = "") -> None:
        super().__init__(response.line, command)
        self.response = response
        self.command = command


class AGIConnectionLost(AGIError):
    """The connection ended before Asterisk answered the command."""


# Values ---------------------------------------------------------------------


@dataclass(frozen=True)
class AGIResponse:
    """A parsed C{200 result=...} reply.

    C{result} is an C{int} when the token is numeric, else the raw text;
    C{resultText} is always the raw token (GET DATA digits keep leading
    zeros there).
    """

    code: int
    result: int | str
    data: str | None
    extras: Mapping[str, str]
    resultText: str
    line: str


# Pure helpers ---------------------------------------------------------------


def quote(arg: str) -> str:
    """Quote one argument for res_agi's C{parse_args}.

    C{parse_args} splits on unquoted space/tab, toggles quoting on an
    unescaped C{"} (the quote itself is dropped; an opening quote after
    whitespace starts a new, possibly empty, argument) and treats a
    backslash, inside or outside quotes, as "take the next character
    literally" (C{\\\\} -> C{\\}, C{\\"} -> C{"}).  So: double every backslash,
    escape every quote, wrap in quotes.  CR/LF/NUL cannot be expressed (the
    line would end or the C string be cut), so they are refused.
    """
    if "\r" in arg or "\n" in arg:
        raise ValueError(f"CR/LF in AGI argument (command injection): {arg!r}")
    if "\x00" in arg:
        raise ValueError(f"NUL in AGI argument: {arg!r}")
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def formatCommand(verb: str, *args: str | int) -> str:
    """Build a command line: C{verb} verbatim, strings quoted, ints as digits."""
    words = [verb]
    for arg in args:
        if isinstance(arg, bool) or not isinstance(arg, str | int):
            raise TypeError(f"AGI argument must be str or int, not {type(arg).__name__}")
        words.append(quote(arg) if isinstance(arg, str) else str(arg))
    return " ".join(words)


def decodeLine(raw: bytes) -> str:
    """UTF-8, else Latin-1: caller names from old phones/trunks are Latin-1."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def encodeCommand(command: str) -> bytes:
    """Validate a raw command line and return its wire bytes."""
    if "\r" in command or "\n" in command:
        raise ValueError(f"CR/LF in AGI command (command injection): {command!r}")
    if "\x00" in command:
        raise ValueError(f"NUL in AGI command: {command!r}")
    if not command.strip():
        raise ValueError("empty AGI command")
    if command[:7].lower() == "failure":
        # res_agi ends the script on any line starting with "failure".
        raise ValueError(f"not an AGI command: {command!r}")
    wire = command.encode("utf-8") + b"\n"
    if len(wire) > MAX_COMMAND_BYTES:
        raise ValueError(
            f"AGI command is {len(wire)} bytes; Asterisk would split it after {MAX_COMMAND_BYTES - 1}"
        )
    return wire


def parseResponse(line: str) -> AGIResponse:
    """Parse a C{200 result=N [(data)] [key=value...]} line.

    Raise C{ValueError} for anything that is not a 200 reply.
    """
    status = STATUS_LINE.match(line)
    if status is None or status.group(1) != "200":
        raise ValueError(f"not a 200 AGI reply: {line!r}")
    result = _RESULT.match(status.group(2))
    if result is None:
        raise ValueError(f"200 AGI reply without result=: {line!r}")
    result_text, rest = result.groups()
    after = _AFTER_RESULT.match(rest)
    if after is not None:
        data: str | None = after.group(1)
        extras = dict(_EXTRA.findall(after.group(2)))
    else:
        # Free-form tail (e.g. SPEECH RECOGNIZE); keep it whole.
        data = rest.strip() or None
        extras = {}
    return AGIResponse(
        code=200,
        result=int(result_text) if _INT.match(result_text) else result_text,
        data=data,
        extras=extras,
        resultText=result_text,
        line=line,
    )


def errorForStatus(code: int, text: str, command: str) -> AGIResponseError:
    """Map a non-200 status line to its exception."""
    if code == 510:
        return AGIInvalidCommand(code, text, command)
    if code == 511:
        return AGIChannelDead(code, text, command)
    if code == 520:
        return AGIUsageError(code, text, command)
    return AGIResponseError(code, text, command)


# Command helpers ------------------------------------------------------------


def _intResult(response: AGIResponse, command: str) -> int:
    if isinstance(response.result, int):
        return response.result
    raise AGICommandError(response, command)


def _digitResult(response: AGIResponse, command: str) -> str | None:
    """Digit commands answer the ASCII code of the key, 0 for none, -1 on error."""
    code = _intResult(response, command)
    if code < 0:
        raise AGICommandError(response, command)
    return chr(code) if code else None


class AGICommands:
    """The AGI command set on top of L{sendCommand}.

    Subclass and implement C{sendCommand} to get a fake channel for
    feature tests.
    """

    def sendCommand(self, command: str) -> Deferred[AGIResponse]:
        raise NotImplementedError

    def _run(self, verb: str, *args: str | int) -> tuple[str, Deferred[AGIResponse]]:
        command = formatCommand(verb, *args)
        return command, self.sendCommand(command)

    def _expectResult(self, verb: str, ok: Callable[[int], bool], *args: str | int) -> Deferred[int]:
        command, d = self._run(verb, *args)

        def check(response: AGIResponse) -> int:
            code = _intResult(response, command)
            if not ok(code):
                raise AGICommandError(response, command)
            return code

        return d.addCallback(check)

    def answer(self) -> Deferred[None]:
        """Answer the channel (result 0 = ok, -1 = failed)."""
        return self._expectResult("ANSWER", lambda code: code == 0).addCallback(lambda _: None)

    def hangup(self, channel: str | None = None) -> Deferred[None]:
        """Hang up this channel, or the named one (result -1: no such channel)."""
        args: tuple[str, ...] = () if channel is None else (channel,)
        return self._expectResult("HANGUP", lambda code: code == 1, *args).addCallback(lambda _: None)

    def noop(self) -> Deferred[None]:
        """Round-trip that also works on a dead channel."""
        return self._run("NOOP")[1].addCallback(lambda _: None)

    def streamFile(
        self, name: str, escapeDigits: str = "", offset: int | None = None
    ) -> Deferred[tuple[str | None, int]]:
        """Play C{name}; fire with (digit pressed or None, end position in samples)."""
        args: tuple[str | int, ...] = (name, escapeDigits) + (() if offset is None else (offset,))
        command, d = self._run("STREAM FILE", *args)

        def parse(response: AGIResponse) -> tuple[str | None, int]:
            digit = _digitResult(response, command)
            endpos = response.extras.get("endpos", "0")
            return digit, int(endpos) if _INT.match(endpos) else 0

        return d.addCallback(parse)

    def getData(
        self, file: str, timeoutMs: int = 0, maxDigits: int | None = None
    ) -> Deferred[tuple[str, bool]]:
        """Play C{file} and collect digits; fire with (digits, timed out)."""
        args: tuple[str | int, ...] = (file, timeoutMs) + (() if maxDigits is None else (maxDigits,))
        command, d = self._run("GET DATA", *args)

        def parse(response: AGIResponse) -> tuple[str, bool]:
            if response.resultText == "-1":
                raise AGICommandError(response, command)
            return response.resultText, response.data == "timeout"

        return d.addCallback(parse)

    def waitForDigit(self, timeoutMs: int) -> Deferred[str | None]:
        """Wait for one key (-1 = forever); None on timeout."""
        command, d = self._run("WAIT FOR DIGIT", timeoutMs)
        return d.addCallback(_digitResult, command)

    def sayDigits(self, digits: str, escapeDigits: str = "") -> Deferred[str | None]:
        """Say C{digits} one by one; fire with the key that interrupted, or None."""
        command, d = self._run("SAY DIGITS", digits, escapeDigits)
        return d.addCallback(_digitResult, command)

    def sayNumber(self, number: int, escapeDigits: str = "") -> Deferred[str | None]:
        """Say C{number} as a number; fire with the key that interrupted, or None."""
        command, d = self._run("SAY NUMBER", number, escapeDigits)
        return d.addCallback(_digitResult, command)

    def setVariable(self, name: str, value: str) -> Deferred[None]:
        """Set a channel variable or writable function (e.g. C{CALLERID(name)})."""
        return self._run("SET VARIABLE", name, value)[1].addCallback(lambda _: None)

    def _valueOrNone(self, verb: str, *args: str) -> Deferred[str | None]:
        command, d = self._run(verb, *args)

        def parse(response: AGIResponse) -> str | None:
            if response.result == 1:
                return response.data if response.data is not None else ""
            if response.result == 0:
                return None
            raise AGICommandError(response, command)

        return d.addCallback(parse)

    def getVariable(self, name: str) -> Deferred[str | None]:
        """Value of a channel variable or function, None when unset."""
        return self._valueOrNone("GET VARIABLE", name)

    def getFullVariable(self, expression: str, channel: str | None = None) -> Deferred[str | None]:
        """Evaluate C{${...}} expressions like the dialplan; None if no channel."""
        args = (expression,) if channel is None else (expression, channel)
        return self._valueOrNone("GET FULL VARIABLE", *args)

    def exec_(self, application: str, options: str = "") -> Deferred[int]:
        """Run a dialplan application; fire with its return value.

        C{options} is in the application's own syntax (commas etc.); only
        the AGI layer is quoted here.  Fails if the application is unknown.
        """
        return self._expectResult("EXEC", lambda code: code != -2, application, options)

    def verbose(self, message: str, level: int = 1) -> Deferred[None]:
        """Write C{message} to the Asterisk console/log at C{level}."""
        return self._run("VERBOSE", message, level)[1].addCallback(lambda _: None)

    def setCallerID(self, callerID: str) -> Deferred[None]:
        """Set caller ID from C{'"Name" <number>'} (Asterisk's parser)."""
        return self._run("SET CALLERID", callerID)[1].addCallback(lambda _: None)

    def databaseGet(self, family: str, key: str) -> Deferred[str | None]:
        """AstDB value, None when missing."""
        return self._valueOrNone("DATABASE GET", family, key)

    def databasePut(self, family: str, key: str, value: str) -> Deferred[None]:
        """Store an AstDB value."""
        d = self._expectResult("DATABASE PUT", lambda code: code == 1, family, key, value)
        return d.addCallback(lambda _: None)

    def databaseDel(self, family: str, key: str) -> Deferred[bool]:
        """Delete an AstDB key; False when it did not exist."""
        command, d = self._run("DATABASE DEL", family, key)
        return d.addCallback(lambda response: _intResult(response, command) == 1)
