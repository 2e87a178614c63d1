"""Errors a user can act on.

A `UserError` carries one line that names the problem (file, line, field); the command
line prints it without a traceback and the UI shows it as a `gr.Error`.
"""


class UserError(Exception):
    """Bad input or a refused action, explained in one line."""


class PermissionDenied(UserError):
    """The signed-in user may not do this."""


class Cancelled(Exception):
    """Long work stopped early on request; everything done so far is stored (run again to resume)."""
