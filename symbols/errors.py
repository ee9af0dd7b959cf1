"""The one exception for a user's mistake, defined in the lowest layer so that both ``symbols`` (an unknown depth or
network) and the library (``resnet_toolkit.errors``, which prints it as one line) use it without importing each other
in a circle."""


class UserError(Exception):
    """A problem with the user's input (a path, a flag, a file) that they can fix.

    The message is printed as one line on stderr by :func:`run_cli`, and the process exits with status 2.
    """
