"""Errors whose message is complete for the user: the CLI prints them without a traceback."""


class UserFacingError(RuntimeError):
    """Something the user must fix (missing file, bad input); the message says what and how."""
