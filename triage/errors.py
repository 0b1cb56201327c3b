"""Errors a user can cause: they end in one clear line and a non-zero exit, never a traceback."""


class TriageError(Exception):
    """A problem with configuration, credentials or reachability, told in one line."""

    exit_code = 1


class ConfigError(TriageError):
    """The configuration is invalid: exit status 2."""

    exit_code = 2
