"""One exception type for input the user must fix.

The entry point prints these as a single line naming the fix, without a traceback, because they are
the user's to act on, not a bug; every other exception keeps its traceback.
"""


class UserError(Exception):
    """Bad input detected before (or instead of) doing work; the message names the fix."""
