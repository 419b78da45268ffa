"""What a user meets when a run does not end normally: the error type and the exit codes (docs/usage.md, "Run files").

A leaf module: it imports nothing of the project, so every module can raise UserError.
"""

EXIT_OK = 0  # finished, or nothing to do
EXIT_USER = 2  # a user's mistake or a fault (bad flag, missing or corrupt file, full disk, run in use): one line
EXIT_DIVERGED = 3  # a non-finite loss or weight: stopped at the next evaluation, last finite checkpoint kept
# Stopped by a signal after writing a checkpoint at the current iteration: 128 + the signal's number,
# the shell's convention (SIGHUP 129, SIGINT 130, SIGUSR1 138, SIGTERM 143); a closed output stops a run
# the same way, as SIGPIPE (141).


class UserError(Exception):
    """A mistake the user can fix; the message is one line: what is wrong and what to do."""
