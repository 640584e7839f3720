"""The one exception type for mistakes a user can make; the CLI prints it as one line and exits non-zero."""


class UserError(Exception):
    """Bad input from the user (a file, a key, a flag). The message names it and says what is wrong."""
