"""The one exception type the command line turns into a one-line error and a non-zero exit."""


class LceError(Exception):
    """A user-facing error: the message names the file or field and what was expected."""
