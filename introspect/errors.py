"""Exceptions that the CLI turns into one-line messages and exit codes."""


class UserError(Exception):
    """Bad input from the user: the message says what is wrong and how to fix it (exit 2)."""
