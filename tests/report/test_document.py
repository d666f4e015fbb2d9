"""HTML / Markdown rendering and output naming: escaping, embedding, relative links."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from fediqad.report.gradcam_figure import _out_names
from shared.report.document import Figure, Heading, Paragraph, Table, render_html, render_markdown


def test_html_escapes_text_and_embeds_figures(tmp_path: Path):
    png = tmp_path / "figures" / "a.png"
    png.parent.mkdir()
    Image.new("RGB", (4, 4), "white").save(png)
    blocks = [
        Heading("<b>x</b>"),
        Paragraph("a & b", "warning"),
        Table(["k|1", "v"], [["<script>", "1"]], "cap"),
        Figure(png, "fig 'one'"),
    ]
    page = render_html(blocks, "t<")
    assert "<script>" not in page and "&lt;script&gt;" in page and "t&lt;" in page
    assert 'src="data:image/png;base64,' in page and str(png) not in page
    md = render_markdown(blocks, "t", tmp_path)
    assert "![a](figures/a.png)" in md and "k\\|1" in md and "> **Not drawn:** a & b" in md


def test_explain_names_do_not_collide():
    names = _out_names([Path("a/x.png"), Path("b/x.png"), Path("c/y.jpg")], Path("out"))
    assert [n.name for n in names] == ["x_gradcam.png", "x_2_gradcam.png", "y_gradcam.png"]
