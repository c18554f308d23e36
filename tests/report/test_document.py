"""The report's document written as Markdown and as one self-contained HTML page."""

from __future__ import annotations

import base64

from lfxai.report.document import (
    Bullets,
    Document,
    Figure,
    Heading,
    Paragraph,
    Table,
    inline_html,
    to_html,
    to_markdown,
)

PNG = base64.b64decode(  # a 1x1 white PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4//8/AAX+Av4N70a4AAAAAElFTkSuQmCC"
)


def _document() -> Document:
    document = Document("Report <1>")
    document.add(
        Paragraph("**smoke profile**: not the paper's", css="banner"),
        Heading(2, "MNIST · pretext", anchor="mnist-pretext"),
        Table(["verdict", "claim"], [["**holds**", "a | b with `code`"]]),
        Bullets(["[link](#missing)", "<script>x</script>"]),
        Figure("figures/a.png", PNG, "A figure"),
    )
    return document


def test_markdown_links_figures_and_escapes_table_pipes():
    assert to_markdown(_document()) == (
        "# Report <1>\n\n"
        "> **smoke profile**: not the paper's\n\n"
        '<a id="mnist-pretext"></a>\n## MNIST · pretext\n\n'
        "| verdict | claim |\n|---|---|\n| **holds** | a \\| b with `code` |\n\n"
        "- [link](#missing)\n- <script>x</script>\n\n"
        "![A figure](figures/a.png)\n\n*A figure*\n"
    )


def test_html_embeds_figures_escapes_text_and_colours_verdicts():
    html = to_html(_document())
    assert f'src="data:image/png;base64,{base64.b64encode(PNG).decode()}"' in html
    assert "figures/a.png" not in html  # self-contained
    assert "<title>Report &lt;1&gt;</title>" in html
    assert '<td class="v-holds">holds</td>' in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "<script>" not in html
    assert '<p class="banner"><strong>smoke profile</strong>: not the paper&#x27;s</p>' in html
    assert '<h2 id="mnist-pretext">' in html


def test_inline_markup_allows_only_safe_links():
    assert inline_html("[a](#x) [b](javascript:alert)") == ('<a href="#x">a</a> <a href="#">b</a>')
    assert inline_html("`<b>`") == "<code>&lt;b&gt;</code>"
