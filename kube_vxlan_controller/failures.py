"""Errors a user can fix, as every subcommand raises them; `cli` prints them as one line and exits with
their code (see `cli` for the exit codes)."""

from __future__ import annotations

import argparse

USAGE_ERROR = 2
CANNOT_START = 3


class Failure(Exception):
    """Something the user can fix: one line on stderr saying what is wrong and what to do, exit `code`,
    no traceback unless `trace` (the cause's traceback, for `--log-level DEBUG`); `logged`: said through
    the log (its JSON format) rather than printed."""

    def __init__(self, message: str, code: int = CANNOT_START, *, trace: bool = False, logged: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.trace = trace
        self.logged = logged


class Parser(argparse.ArgumentParser):
    """argparse, whose usage errors are one line naming the flag (`--help` has the rest), exit 2."""

    def error(self, message: str):
        raise Failure(f"{message} (see {self.prog} --help)", USAGE_ERROR)
