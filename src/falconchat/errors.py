"""One tree of errors; each carries a one-line message and the exit code the CLI returns."""

from __future__ import annotations


class FalconchatError(Exception):
    exit_code = 1

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UsageError(FalconchatError):
    """A wrong flag, argument or command."""

    exit_code = 2


class ConfigError(FalconchatError):
    """A setting with a wrong value, a missing or unreadable model or config file."""

    exit_code = 2


class InputError(FalconchatError):
    """Input that cannot be used: too large, or a message that cannot fit the context."""

    exit_code = 2


class EndpointError(FalconchatError):
    """The endpoint failed in a way none of the subclasses names (a 500, a cut stream)."""

    exit_code = 1


class Unreachable(EndpointError):
    exit_code = 3


class Timeout(EndpointError):
    exit_code = 3


class AuthRejected(EndpointError):
    exit_code = 4


class Rejected(EndpointError):
    """The endpoint refused the request itself (validation, not found)."""

    exit_code = 5


class Overloaded(EndpointError):
    exit_code = 6


EXIT_OK = 0
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
