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


def render_markdown(title: str, parts: list[tuple[str | None, list[Section]]], md_path: Path) -> str:
    """``parts``: (part heading or None, its sections); part headings are level 2, sections level 3
    (level 2 when the part has no heading)."""
    out = [f"# {title}\n"]
    base = md_path.parent.resolve()
    for heading, sections in parts:
        level = "##"
        if heading:
            out.append(f"## {heading}\n")
            level = "###"
        for name, items in sections:
            out.append(f"{level} {name}\n")
            for it in items:
                if isinstance(it, pd.DataFrame):
                    out.append(md_table(it) + "\n")
                elif isinstance(it, Path):
                    p = Path(it).resolve()
                    rel = p.relative_to(base) if p.is_relative_to(base) else it
                    out.append(f"![{Path(it).stem}]({rel})\n")
                else:
                    out.append(str(it) + "\n")
    return "\n".join(out)


def render_html(title: str, parts: list[tuple[str | None, list[Section]]]) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for heading, sections in parts:
        tag = "h2"
        if heading:
            body.append(f"<h2>{html.escape(heading)}</h2>")
            tag = "h3"
        for name, items in sections:
            body.append(f"<{tag}>{html.escape(name)}</{tag}>")
            for it in items:
                if isinstance(it, pd.DataFrame):
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
