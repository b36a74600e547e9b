"""facefair.pages: every HTML page is built from one stylesheet and one figure encoder."""

import base64
import re
from pathlib import Path

import pandas as pd

from facefair import pages

SRC = Path(__file__).resolve().parents[1] / "src" / "facefair"


def test_no_page_module_keeps_its_own_stylesheet_or_encoder():
    # a second <style> or base64 encoder anywhere else is a page drifting from the others
    offenders = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                       if p.name != "pages.py" and re.search(r"<style|b64encode|import base64|\.savefig\([^)]*(buffer|BytesIO)",
                                                             p.read_text()))
    assert offenders == []


def test_a_figure_becomes_a_png_data_uri_and_a_pyplot_figure_is_closed():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    uri = pages.figure_uri(fig)
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)
    bare = Figure()  # the audit's figures: no pyplot state to close
    bare.add_subplot().bar([0], [1])
    assert pages.figure_png(bare)[:4] == b"\x89PNG"


def test_a_document_carries_the_one_stylesheet_and_escapes_its_title():
    page = pages.document("a <b> & c", ["<p>x</p>"])
    assert page.count("<style>") == 1 and pages.STYLE in page
    assert "<title>a &lt;b&gt; &amp; c</title>" in page


def test_notes_escape_text_keep_raw_items_and_say_none_when_empty():
    assert "<li>None.</li>" in pages.notes([])
    html = pages.notes(["a < b"], "How to read this", heading="h2", anchor="notes", raw=["<code>x</code>"])
    assert html.startswith('<h2 id="notes">How to read this</h2>')
    assert "<li>a &lt; b</li>" in html and "<li><code>x</code></li>" in html


def test_counts_print_as_integers():
    stats = pd.DataFrame({"quantity": ["width", "brightness"], "count": [500.0, 500.0], "mean": [200.0, 127.95]})
    table = pages.table(stats)
    assert "<td>500</td>" in table and "500.000" not in table and "127.950" in table
