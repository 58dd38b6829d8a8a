"""Errors a user can fix. Each message names the key or file:line and what to do."""


class SafedriftError(Exception):
    """Bad input: config, data file, model path or judge reply."""


class ConfigError(SafedriftError):
    """A config problem, phrased for the user: 'config key a.b.c: what is wrong; what to do'."""


class DataError(SafedriftError):
    """A data file is missing or malformed (message starts with file:line)."""


class ModelPathError(SafedriftError):
    """A model folder or hub id cannot be loaded."""
