"""A report as a list of blocks, rendered twice: self-contained HTML and Markdown.

HTML embeds every PNG as a base64 data URI and carries its CSS inline, so the page
works as one file (mail it, archive it) and loads nothing from anywhere. Markdown
links the PNGs the report wrote next to it, by relative path.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str
    # "text", "note" (provenance), "warning" (something left out), "banner" (synthetic
    # data) or "alarm" (a useless model)
    kind: str = "text"


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    path: Path
    caption: str


Block = Heading | Paragraph | Table | Figure

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1250px; margin: 2em auto; padding: 0 1em;
       color: #111; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #999; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #e8e8e8; }
caption { caption-side: top; text-align: left; font-style: italic; padding-bottom: 0.3em; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; border: 1px solid #ccc; }
figcaption { font-size: 0.9em; margin-top: 0.3em; }
.note { border-left: 4px solid #0072B2; background: #eef5fb; padding: 0.5em 0.8em; }
.warning { border-left: 4px solid #D55E00; background: #fdf0e8; padding: 0.5em 0.8em; }
.banner { border: 3px solid #000; background: #F0E442; padding: 0.6em 0.8em; font-weight: bold; }
.alarm { border: 3px solid #D55E00; background: #fbd9c4; padding: 0.6em 0.8em; font-weight: bold; }
"""


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_html(blocks: list[Block], title: str) -> str:
    """One self-contained page: no external file, script, font or style sheet."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for block in blocks:
        if isinstance(block, Heading):
            level = min(max(block.level, 2), 4)
            parts.append(f"<h{level}>{html.escape(block.text)}</h{level}>")
        elif isinstance(block, Paragraph):
            css = f' class="{block.kind}"' if block.kind != "text" else ""
            parts.append(f"<p{css}>{html.escape(block.text)}</p>")
        elif isinstance(block, Table):
            parts.append("<table>")
            if block.caption:
                parts.append(f"<caption>{html.escape(block.caption)}</caption>")
            parts.append(
                "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in block.header) + "</tr>"
            )
            for row in block.rows:
                parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
            parts.append("</table>")
        else:
            alt = html.escape(block.caption, quote=True)
            parts.append(
                f'<figure><img src="{_data_uri(block.path)}" alt="{alt}">'
                f"<figcaption>{html.escape(block.caption)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


PREFIX = {
    "note": "> **Note:** ",
    "warning": "> **Not drawn:** ",
    "banner": "> **SYNTHETIC DATA:** ",
    "alarm": "> **WARNING - degenerate model:** ",
}


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: list[Block], title: str, base: Path) -> str:
    """Markdown; figures are linked relative to `base`, the folder the .md file goes in."""
    lines = [f"# {title}", ""]
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * min(max(block.level, 2), 4) + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            prefix = PREFIX.get(block.kind, "")
            lines += [prefix + block.text, ""]
        elif isinstance(block, Table):
            if block.caption:
                lines += [f"*{block.caption}*", ""]
            lines.append("| " + " | ".join(_md_cell(h) for h in block.header) + " |")
            lines.append("|" + "---|" * len(block.header))
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            lines.append("")
        else:
            rel = block.path.relative_to(base).as_posix()
            lines += [f"![{block.path.stem}]({rel})", "", f"*{block.caption}*", ""]
    return "\n".join(lines)
