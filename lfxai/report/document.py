"""A small document model written out twice: Markdown (``index.md``) and one HTML file.

Blocks are headings, paragraphs, bullet lists, tables and figures. Inline text may use
``**bold**``, ``` `code` ``` and ``[text](url)``; the HTML writer escapes everything else, so
text read from a run (names, tags) cannot inject markup. Figures are PNG bytes: Markdown links
the file under ``figures/``, HTML embeds it as a data URI, so ``index.html`` stands alone.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Heading:
    """A section heading of ``level`` (1: the title), linked to by ``anchor``."""

    level: int
    text: str
    anchor: str = ""


@dataclass(frozen=True)
class Paragraph:
    """A paragraph of Markdown text, styled by ``css`` in the HTML."""

    text: str
    css: str = ""  # e.g. "banner", "note"


@dataclass(frozen=True)
class Bullets:
    """A bullet list."""

    items: list[str]


@dataclass(frozen=True)
class Table:
    """A table: a header row and rows of text cells."""

    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Figure:
    """A PNG figure: ``path`` is relative to the report folder (``figures/<name>.png``)."""

    path: str
    png: bytes
    caption: str


Block = Heading | Paragraph | Bullets | Table | Figure


@dataclass
class Document:
    """The report as a title and its blocks, in order (written as Markdown and HTML)."""

    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> None:
        """Appends blocks to the document."""
        self.blocks.extend(blocks)

    def figures(self) -> list[Figure]:
        """The document's figures, in order."""
        return [b for b in self.blocks if isinstance(b, Figure)]


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(document: Document) -> str:
    """The document as GitHub-flavoured Markdown (figures linked, not embedded)."""
    out = [f"# {document.title}", ""]
    for block in document.blocks:
        if isinstance(block, Heading):
            anchor = f'<a id="{block.anchor}"></a>\n' if block.anchor else ""
            out += [f"{anchor}{'#' * block.level} {block.text}", ""]
        elif isinstance(block, Paragraph):
            out += [f"> {block.text}" if block.css == "banner" else block.text, ""]
        elif isinstance(block, Bullets):
            out += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Table):
            out.append("| " + " | ".join(_cell(h) for h in block.header) + " |")
            out.append("|" + "---|" * len(block.header))
            out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in block.rows]
            out.append("")
        elif isinstance(block, Figure):
            out += [f"![{block.caption}]({block.path})", "", f"*{block.caption}*", ""]
    return "\n".join(out).rstrip() + "\n"


_INLINE = re.compile(r"\*\*(.+?)\*\*|`([^`]+)`|\[([^\]]+)\]\(([^)\s]+)\)")


def inline_html(text: str) -> str:
    """``**bold**``, `` `code` `` and ``[text](url)`` to HTML; everything else escaped."""
    parts, last = [], 0
    for match in _INLINE.finditer(text):
        parts.append(html.escape(text[last : match.start()]))
        bold, code, label, url = match.groups()
        if bold is not None:
            parts.append(f"<strong>{inline_html(bold)}</strong>")
        elif code is not None:
            parts.append(f"<code>{html.escape(code)}</code>")
        else:
            safe = url if re.match(r"^(https?:|#|[\w./-]+$)", url) else "#"
            parts.append(f'<a href="{html.escape(safe)}">{html.escape(label)}</a>')
        last = match.end()
    parts.append(html.escape(text[last:]))
    return "".join(parts)


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 70rem;
       margin: 2rem auto; padding: 0 1rem; color: #1f2328; line-height: 1.45; }
h1 { font-size: 1.8rem; border-bottom: 1px solid #d0d7de; padding-bottom: .3rem; }
h2 { font-size: 1.4rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem;
     margin-top: 2.2rem; }
h3 { font-size: 1.1rem; margin-top: 1.6rem; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .88rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .5rem; vertical-align: top; text-align: left; }
th { background: #f6f8fa; }
code { background: #f6f8fa; padding: .1rem .3rem; border-radius: 4px; font-size: .85em; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; border: 1px solid #d0d7de; }
figcaption { font-size: .85rem; color: #59636e; }
.banner { background: #fff8c5; border: 1px solid #d4a72c; padding: .6rem .8rem;
          border-radius: 6px; }
.note { color: #59636e; font-size: .9rem; }
.v-holds { color: #1a7f37; font-weight: 600; } .v-fails { color: #cf222e; font-weight: 600; }
.v-inconclusive { color: #9a6700; font-weight: 600; } .v-untested { color: #59636e; }
"""

_VERDICT_CELL = re.compile(r"^\*\*(holds|fails|inconclusive|untested)\*\*$")


def _html_cell(text: str, tag: str) -> str:
    verdict = _VERDICT_CELL.match(str(text))
    if verdict:  # verdicts in colour
        return f'<{tag} class="v-{verdict.group(1)}">{verdict.group(1)}</{tag}>'
    return f"<{tag}>{inline_html(str(text))}</{tag}>"


def to_html(document: Document) -> str:
    """The document as one self-contained HTML page (figures as data URIs, inline CSS)."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(document.title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{inline_html(document.title)}</h1>",
    ]
    for block in document.blocks:
        if isinstance(block, Heading):
            anchor = f' id="{html.escape(block.anchor)}"' if block.anchor else ""
            out.append(f"<h{block.level}{anchor}>{inline_html(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            css = f' class="{block.css}"' if block.css else ""
            out.append(f"<p{css}>{inline_html(block.text)}</p>")
        elif isinstance(block, Bullets):
            items = "".join(f"<li>{inline_html(i)}</li>" for i in block.items)
            out.append(f"<ul>{items}</ul>")
        elif isinstance(block, Table):
            head = "".join(_html_cell(h, "th") for h in block.header)
            body = "".join(
                "<tr>" + "".join(_html_cell(c, "td") for c in row) + "</tr>" for row in block.rows
            )
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(block, Figure):
            data = base64.b64encode(block.png).decode("ascii")
            alt, caption = html.escape(block.caption), inline_html(block.caption)
            out.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
                f"<figcaption>{caption}</figcaption></figure>"
            )
    out.append("</body></html>")
    return "\n".join(out) + "\n"
