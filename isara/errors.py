"""The one error type a user sees as a single line."""


class IsaraError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""
