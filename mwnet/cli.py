"""Flags as people type them, for the two scripts and every tool: `--corruption-prob` and `--corruption_prob`
both work (help lists the spelling declared, the original's for its flags), and an unknown flag gets the
nearest known one ("did you mean --eval_every?").
"""

import argparse
import difflib
import sys


def _spelling(flag):
    """A flag's name with hyphens and underscores made one: --eval-every and --eval_every are the same flag."""
    return flag.replace("_", "-")


class Parser(argparse.ArgumentParser):
    def _long_flags(self):
        """{flag in one spelling: the flag as declared first for its option (the documented one)}."""
        out = {}
        for flag, action in self._option_string_actions.items():
            if flag.startswith("--"):
                out[_spelling(flag)] = next(s for s in action.option_strings if s.startswith("--"))
        return out

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        known, respelled = self._long_flags(), []
        for i, arg in enumerate(args):
            if arg == "--":  # what follows is values only
                respelled += args[i:]
                break
            name, eq, value = arg.partition("=")
            if arg.startswith("--") and name not in self._option_string_actions and _spelling(name) in known:
                arg = known[_spelling(name)] + eq + value
            respelled.append(arg)
        return super().parse_known_args(respelled, namespace)

    def suggestion(self, message):
        """'; did you mean --x?' for the first unknown flag of an 'unrecognized arguments' message, or ''."""
        if not message.startswith("unrecognized arguments: "):
            return ""
        known = {name[2:]: flag for name, flag in self._long_flags().items()}  # compared without the leading --
        for word in message.split(": ", 1)[1].split():
            if word.startswith("--"):
                close = difflib.get_close_matches(_spelling(word.partition("=")[0])[2:], known, n=1, cutoff=0.6)
                return f"; did you mean {known[close[0]]}?" if close else ""
        return ""

    def error(self, message):
        super().error(message + self.suggestion(message))
