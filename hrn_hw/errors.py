"""Errors the CLI turns into a one-line message and exit code 2."""


class HrnError(Exception):
    """A user-facing failure: bad input, missing data or tool. Exit code 2."""

    exit_code = 2


class DataMissingError(HrnError):
    """A data set is not installed; the message names the command that installs it."""


class CheckpointError(HrnError):
    """A checkpoint is corrupt, foreign, unsafe or from a newer format."""


class ConfigError(HrnError):
    """A configuration file is malformed or asks for something unsupported."""


class ExportError(HrnError):
    """An export, its inputs or its output directory are unusable."""
