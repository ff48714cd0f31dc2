"""The one exception type for mistakes a user can make (bad paths, settings, tables).

The CLI turns a :class:`UserError` into a one-line message and a non-zero exit;
any other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A bad input the user can fix: the message is a sentence saying what was expected and found."""
