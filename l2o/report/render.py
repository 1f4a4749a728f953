"""Sections (title, items) to Markdown and to one self-contained HTML page.

An item is a DataFrame (a table), a Path (a PNG: linked from the Markdown,
embedded in the HTML), a string starting with ``- `` (a bullet list, one item
per line), a fenced code block, or a paragraph.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

Section = tuple[str, list]


def md_table(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(str(x) for x in r.values) + " |")
    return "\n".join(lines)


def slug(title: str) -> str:
    """A heading's anchor, as GitHub and the HTML page make it.

    >>> slug("What does stopping buy? Accuracy against compute")
    'what-does-stopping-buy-accuracy-against-compute'
    """
    import re

    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def contents(parts: list[tuple[str | None, list[Section]]]) -> list[tuple[int, str]]:
    """``(level, title)`` of the headings a table of contents lists: every part, and the sections
    of the parts without a heading of their own."""
    out = []
    for heading, sections in parts:
        if heading:
            out.append((2, heading))
        else:
            out += [(2, name) for name, _ in sections]
    return out


def walk(parts: list[tuple[str | None, list[Section]]]):
    """``(level, title)`` of every heading in order (level 2 for a part, 3 for its sections; 2 for the
    sections of a part without a heading), each section's title followed by its items: yields
    ``("heading", level, title)`` and ``("item", level, item)``."""
    for heading, sections in parts:
        level = 2
        if heading:
            yield "heading", 2, heading
            level = 3
        for name, items in sections:
            yield "heading", level, name
            for it in items:
                yield "item", level, it


def render_markdown(title: str, parts: list[tuple[str | None, list[Section]]], md_path: Path) -> str:
    """The report as Markdown; figures linked relative to ``md_path``."""
    out = [f"# {title}\n", "Contents:\n", "\n".join(f"- [{t}](#{slug(t)})" for _, t in contents(parts)) + "\n"]
    base = md_path.parent.resolve()
    for kind, level, it in walk(parts):
        if kind == "heading":
            out.append(f"{'#' * level} {it}\n")
        elif isinstance(it, pd.DataFrame):
            out.append(md_table(it) + "\n")
        elif isinstance(it, Path):
            p = Path(it).resolve()
            rel = p.relative_to(base) if p.is_relative_to(base) else it
            out.append(f"![{Path(it).stem}]({rel})\n")
        else:
            out.append(str(it) + "\n")
    return "\n".join(out)


def render_html(title: str, parts: list[tuple[str | None, list[Section]]]) -> str:
    """The report as one self-contained HTML page (figures embedded)."""
    body = [f"<h1>{html.escape(title)}</h1>", "<p>Contents:</p><ul>"
            + "".join(f'<li><a href="#{slug(t)}">{html.escape(t)}</a></li>' for _, t in contents(parts)) + "</ul>"]
    for kind, level, it in walk(parts):
        if kind == "heading":
            body.append(f'<h{level} id="{slug(it)}">{html.escape(it)}</h{level}>')
        elif isinstance(it, pd.DataFrame):
            body.append(it.to_html(index=False, border=0, classes="t", escape=True))
        elif isinstance(it, Path):
            data = base64.b64encode(Path(it).read_bytes()).decode()
            body.append(f'<img alt="{html.escape(it.stem)}" src="data:image/png;base64,{data}"/>')
        elif str(it).startswith("```"):
            body.append(f"<pre>{html.escape(str(it).strip('`').removeprefix('yaml'))}</pre>")
        elif str(it).startswith("- "):
            items_html = "".join(f"<li>{html.escape(s[2:])}</li>" for s in str(it).splitlines())
            body.append(f"<ul>{items_html}</ul>")
        else:
            body.append(f"<p>{html.escape(str(it))}</p>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;}"
             "table.t{border-collapse:collapse;font-size:13px}table.t td,table.t th{padding:3px 8px;"
             "border-bottom:1px solid #ddd;text-align:right}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")
