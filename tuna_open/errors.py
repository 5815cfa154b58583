"""User-facing errors: the CLI prints these as one line and exits 2, never a traceback."""


class UserError(Exception):
    """A mistake in the user's recipe, files or flags. The message names the field, file or line."""
