"""One tree of errors; each class carries its `kind` (the stable name scripts match on),
and the exit code the CLI returns. A message is one line, safe to show."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The exit codes the README documents."""

    OK = 0
    ERROR = 1
    USAGE = 2  # usage or bad input
    UNREACHABLE = 3  # endpoint unreachable or timed out
    AUTH_REJECTED = 4
    REJECTED = 5  # the endpoint refused the request
    OVERLOADED = 6  # still overloaded after retries
    INTERRUPTED = 130
    BROKEN_PIPE = 141


class FalconchatError(Exception):
    """Every error falconchat raises: `message` is one line (the CLI's `falconchat: error: …`),
    `kind` the stable name scripts match on, `exit_code` the command's exit status."""

    kind = "error"
    exit_code = ExitCode.ERROR

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UsageError(FalconchatError):
    """A wrong flag, argument or command."""

    kind = "usage"
    exit_code = ExitCode.USAGE


class ConfigError(FalconchatError):
    """A setting with a wrong value, a missing or unreadable model or config file."""

    kind = "config"
    exit_code = ExitCode.USAGE


class InputError(FalconchatError):
    """Input that cannot be used: too large, or a message that cannot fit the context."""

    kind = "input"
    exit_code = ExitCode.USAGE


class EndpointError(FalconchatError):
    """The endpoint failed in a way none of the subclasses names (a 500, a cut stream)."""

    kind = "endpoint"
    exit_code = ExitCode.ERROR


class Unreachable(EndpointError):
    kind = "unreachable"
    exit_code = ExitCode.UNREACHABLE


class Timeout(EndpointError):
    kind = "timeout"
    exit_code = ExitCode.UNREACHABLE


class AuthRejected(EndpointError):
    kind = "auth_rejected"
    exit_code = ExitCode.AUTH_REJECTED


class Rejected(EndpointError):
    """The endpoint refused the request itself (validation, not found)."""

    kind = "rejected"
    exit_code = ExitCode.REJECTED


class InvalidReply(Rejected):
    """A reply that should have been JSON (`--schema`, `--json-mode`) and is not, or does not
    match the schema: the endpoint did not honour the constraint."""

    kind = "invalid_reply"


class Overloaded(EndpointError):
    """Too busy to take the request: a remote endpoint after retries, or serve's full queue."""

    kind = "overloaded"
    exit_code = ExitCode.OVERLOADED


class LogError(FalconchatError):
    """The conversation log could not be read or changed (`falconchat logs`, `-c`); writing an
    exchange never raises it: that is one warning and the reply goes on."""

    kind = "log"
    exit_code = ExitCode.ERROR
