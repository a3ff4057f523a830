"""Exceptions of the data path.

Every error raised while locating, verifying or parsing a data file is a
:class:`DataError` (a ``ValueError``), so callers can catch the whole family at once.
"""
from __future__ import annotations

from typing import Optional

_MAX_LINE_CHARS = 120


class DataError(ValueError):
    """Base class of every data-path error."""


class DataFormatError(DataError):
    """A line of an input file breaks a rule of its format.

    The message names the file, the 1-based line number, the offending line (truncated
    to 120 characters), the rule broken and how to fix it::

        Beauty.txt:17: every field must be an integer id, got 'abc' (field 3)
          line: '17 4 abc 9'
          fix: the 'sequences' format is `user item1 item2 ...` with integer ids; ...
    """

    def __init__(self, path: str, line_no: Optional[int], line: Optional[str], rule: str,
                 fix: Optional[str] = None) -> None:
        self.path = str(path)
        self.line_no = line_no
        self.line = line
        self.rule = rule
        self.fix = fix
        where = f"{self.path}:{line_no}" if line_no is not None else self.path
        msg = f"{where}: {rule}"
        if line is not None:
            msg += f"\n  line: {truncate(line)!r}"
        if fix:
            msg += f"\n  fix: {fix}"
        super().__init__(msg)

    def __reduce__(self):  # keep picklable (multiprocessing, pytest-xdist)
        return (type(self), (self.path, self.line_no, self.line, self.rule, self.fix))


class DatasetNotFoundError(DataError, FileNotFoundError):
    """A data file (named dataset or path) does not exist."""


class ChecksumError(DataError):
    """A data file's sha256 differs from the published one."""


def truncate(line: str, limit: int = _MAX_LINE_CHARS) -> str:
    line = line.rstrip("\r\n")
    return line if len(line) <= limit else line[: limit - 3] + "..."
