"""The one exception type the CLI turns into a clean message instead of a traceback."""


class UnleetError(Exception):
    """A user-facing failure: bad input, bad params, an empty dataset. The message says what and where."""
