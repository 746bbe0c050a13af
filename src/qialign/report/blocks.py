"""The page's building blocks: a :class:`Section` (id, title, blocks) and the block makers.

A block is a small dict the template renders by ``kind``: ``p`` (trusted HTML made here, inputs
escaped), ``h3``, ``table`` (:class:`~qialign.report.tables.Table`), ``figure`` (data URI +
caption), ``pre``, ``list``, ``note``, ``cards``, ``details``, ``equation``.
"""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup

from qialign.report.tables import Table


@dataclass
class Section:
    id: str
    title: str
    blocks: list[dict]
    lead: str = ""


def P(html) -> dict:
    return {"kind": "p", "html": Markup(html)}


def H3(text: str, id: str = "") -> dict:
    return {"kind": "h3", "text": text, "id": id}


def NOTE(html, tone: str = "info") -> dict:
    return {"kind": "note", "html": Markup(html), "tone": tone}


def FIG(src: str, caption: str, alt: str) -> dict:
    return {"kind": "figure", "src": src, "caption": caption, "alt": alt}


def TAB(table: Table) -> dict:
    return {"kind": "table", "table": table}


def LIST(items) -> dict:
    return {"kind": "list", "items": [Markup(i) for i in items]}


def slug(s: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in s).strip("-").lower()


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")
