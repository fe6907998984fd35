"""Errors a user can cause. The CLI turns each into one line on stderr and exit code 2. Imports nothing heavy."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PeftbenchError(Exception):
    """A problem with the user's input or environment, reported as one clear line, never a traceback."""


class SuiteError(PeftbenchError):
    """Every problem found in one suite file, reported at once."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        n = len(problems)
        head = f"{path}: {n} problem{'s' if n != 1 else ''}: "
        super().__init__(head + "; ".join(problems))


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
