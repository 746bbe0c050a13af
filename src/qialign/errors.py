"""User-facing errors: raised for mistakes in configs or data, printed without a traceback."""

from __future__ import annotations

from dataclasses import dataclass, field


class QialignError(Exception):
    """A problem the user can fix (bad config, bad data). The CLI prints it and exits 2."""


@dataclass
class Problem:
    """One validation finding: where it is, how many rows, examples, and what was expected."""

    file: str
    column: str | None
    expected: str
    rows: list = field(default_factory=list)  # example row numbers (1-based data rows) or keys
    count: int = 0

    def render(self, max_rows: int = 10) -> str:
        where = f"{self.file}" + (f", column '{self.column}'" if self.column else "")
        head = f"- {where}: {self.expected}"
        if self.count:
            shown = ", ".join(str(r) for r in self.rows[:max_rows])
            more = "" if self.count <= max_rows else f" (first {max_rows} of {self.count})"
            head += f"\n    {self.count} row(s){more}: {shown}"
        return head


class DataValidationError(QialignError):
    """All problems found in a trial's tables, reported together."""

    def __init__(self, problems: list[Problem], trial: str = "", kind: str = "data"):
        self.problems = problems
        self.trial = trial
        self.kind = kind  # "data", or "model" for models the data cannot identify
        super().__init__(self.render())

    def render(self) -> str:
        title = f"Trial '{self.trial}': " if self.trial else ""
        lines = [f"{title}{len(self.problems)} {self.kind} problem(s) found; nothing was written."]
        lines += [p.render() for p in self.problems]
        return "\n".join(lines)
