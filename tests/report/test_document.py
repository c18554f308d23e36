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
    web = "[doi](https://doi.org/10.5281/zenodo.1) [h](http://x.org) [f](figures/a.png)"
    assert inline_html(web) == (
        '<a href="https://doi.org/10.5281/zenodo.1">doi</a> <a href="http://x.org">h</a> '
        '<a href="figures/a.png">f</a>'
    )


def test_both_pages_of_a_small_document_exactly() -> None:
    document = Document(
        "Report <1>",
        [
            Heading(2, "Plain"),
            Heading(3, "Anchored", "a-1"),
            Paragraph("Note", "note"),
            Paragraph("Bare"),
            Bullets(["x", "**y**"]),
            Table(["k", "**v**"], [["1", "**holds**"], ["2", "a|b\nc"]]),
            Figure("figures/f.png", b"\x89P", "Cap"),
        ],
    )
    from lfxai.report.document import STYLE

    assert to_html(document) == (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>Report &lt;1&gt;</title><style>{STYLE}</style></head><body>\n"
        "<h1>Report &lt;1&gt;</h1>\n"
        "<h2>Plain</h2>\n"
        '<h3 id="a-1">Anchored</h3>\n'
        '<p class="note">Note</p>\n'
        "<p>Bare</p>\n"
        "<ul><li>x</li><li><strong>y</strong></li></ul>\n"
        "<table><thead><tr><th>k</th><th><strong>v</strong></th></tr></thead><tbody>"
        '<tr><td>1</td><td class="v-holds">holds</td></tr>'
        "<tr><td>2</td><td>a|b\nc</td></tr></tbody></table>\n"
        '<figure><img src="data:image/png;base64,iVA=" alt="Cap"><figcaption>Cap</figcaption>'
        "</figure>\n"
        "</body></html>\n"
    )
    assert to_markdown(document) == (
        "# Report <1>\n\n"
        "## Plain\n\n"
        '<a id="a-1"></a>\n### Anchored\n\n'
        "Note\n\n"
        "Bare\n\n"
        "- x\n- **y**\n\n"
        "| k | **v** |\n|---|---|\n| 1 | **holds** |\n| 2 | a\\|b c |\n\n"
        "![Cap](figures/f.png)\n\n*Cap*\n"
    )
