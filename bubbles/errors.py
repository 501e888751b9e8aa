"""The one exception type for mistakes a user can fix (bad input, bad config); the CLI prints it as one line."""


class UserError(Exception):
    """A problem with the user's input: the message says what and where, and is shown without a traceback."""
