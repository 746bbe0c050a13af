"""What a long step tells the person at the terminal: what runs, how far, how long it should take.

The workflow's rules send a step's output to its log and hand the terminal to the step as file
descriptor 3 (``qialign --progress-fd 3 <step> ... 3>&2 > {log} 2>&1``). :func:`say` writes each line
to stdout (the log keeps the whole story) and to that descriptor (the terminal shows one line per
stage); run by hand, stdout is the terminal and nothing is written twice.

Expected durations are learnt on the machine: a step that finishes records its wall time under
``.cache/qialign/timings/`` (keyed by the step and what it ran on), and the next run quotes it. A step
with no record of its own quotes the median of the same step's other records (``typical ... here``).
Within a step, :class:`Countdown` turns the mean time per finished item into the time left.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: where finished steps record their wall time, relative to the project (the workflow's working dir)
TIMINGS = Path(".cache") / "qialign" / "timings"
_TERMINAL: list = [None]


def attach_terminal(fd: int | None) -> None:
    """Also write progress lines to descriptor ``fd`` (the workflow passes the terminal as 3).

    Called first thing by the CLI, before any library opens files, so ``fd`` is what the shell gave.
    """
    if fd is None:
        return
    try:
        _TERMINAL[0] = os.fdopen(os.dup(fd), "w", buffering=1)
    except OSError:  # not open: run by hand without the redirection, stdout is the terminal
        _TERMINAL[0] = None


def say(message: str) -> None:
    """One timestamped line to the log (stdout) and, under the workflow, to the terminal."""
    line = f"[{time.strftime('%H:%M:%S')}] {message}"
    print(line, flush=True)
    if _TERMINAL[0] is not None:
        try:
            _TERMINAL[0].write(line + "\n")
        except OSError:  # the terminal went away (the run was interrupted): the log still has it
            _TERMINAL[0] = None


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``1 h 2 min``."""
    s = round(seconds)
    if s < 90:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def _record_path(step: str, key: tuple[str, ...]) -> Path:
    safe = "__".join(re.sub(r"[^A-Za-z0-9_.-]", "_", k) for k in key)
    return TIMINGS / step / f"{safe}.json"


def expected(step: str, key: tuple[str, ...]) -> str:
    """How long this step took here last time, or the median of the step's other runs, or ''."""
    own = _record_path(step, key)
    if own.exists():
        return f"expected about {duration(json.loads(own.read_text())['seconds'])} (its last run here)"
    others = [json.loads(p.read_text())["seconds"] for p in (TIMINGS / step).glob("*.json")]
    if others:
        return f"expected about {duration(statistics.median(others))} (a typical {step} here)"
    return "no earlier run on this machine to time it by"


def _record(step: str, key: tuple[str, ...], seconds: float) -> None:
    path = _record_path(step, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"seconds": round(seconds, 2), "finished": time.strftime("%FT%T")}))
        tmp.replace(path)
    except OSError:  # a read-only project still runs; it just cannot learn
        pass


@contextmanager
def timed_step(step: str, key: tuple[str, ...]) -> Iterator[None]:
    """Announce ``step`` on ``key`` with its expected time, then how long it took or that it failed."""
    label = f"{step} {' / '.join(key)}"
    say(f"▶ {label}: started; {expected(step, key)}")
    t0 = time.perf_counter()
    try:
        yield
    except BaseException:
        say(f"✗ {label}: failed after {duration(time.perf_counter() - t0)}")
        raise
    seconds = time.perf_counter() - t0
    _record(step, key, seconds)
    say(f"✓ {label}: done in {duration(seconds)}")


class Countdown:
    """Time left in a loop of ``total`` similar items: the mean time per finished item times those left."""

    def __init__(self, total: int, what: str) -> None:
        self.total, self.what, self.done, self.t0 = int(total), what, 0, time.perf_counter()

    def tick(self, detail: str = "") -> str:
        """Count one item done and say how far the loop is and how long the rest should take."""
        self.done += 1
        per = (time.perf_counter() - self.t0) / self.done
        left = self.total - self.done
        tail = f"; about {duration(per * left)} left" if left else ""
        line = f"{self.what} {self.done}/{self.total}{': ' + detail if detail else ''}{tail}"
        say(line)
        return line
