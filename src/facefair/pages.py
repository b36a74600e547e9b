"""One page builder for every HTML page facefair writes (audit, compare, transfer, describe,
explain, clean, robustness): one stylesheet, one figure encoder, and the shared pieces (document,
header, notes, tables, sections).

Pages are self-contained: figures and thumbnails are inlined as data URIs, with no script and no
external file, so a page can be mailed or attached to an issue as one file.  A bottom-layer
module: it imports nothing from facefair, and matplotlib/pandas only where they are used.

>>> from facefair import pages
>>> section = pages.Section("Counts").text("Two groups.").raw("<p>...</p>")
>>> html = pages.document("Example", [pages.header("Example", "made by a doctest"), section.html()])
>>> html.startswith("<!DOCTYPE html>") and "<h2>Counts</h2>" in html
True
"""

from __future__ import annotations

import base64
import html as _html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

#: The one stylesheet: layout and tables shared by every page, then the classes of single pages
#: (the audit's CI and verdict marks, compare's better/worse rows, transfer's bars, clean's faces).
STYLE = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px auto;max-width:1240px;
color:#222;line-height:1.45;padding:0 16px}
h1{font-size:1.6em;margin-bottom:4px}h2{font-size:1.25em;border-bottom:2px solid #3b6ea5;padding-bottom:3px;
margin-top:36px}h3{font-size:1.05em;margin-top:24px;color:#333}
.meta,.note{color:#555;font-size:13px}
.summary{background:#f3f6fa;border-left:4px solid #3b6ea5;padding:10px 16px;font-size:15px}
table{border-collapse:collapse;font-size:12.5px;margin:8px 0 14px;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #d6d9de;padding:3px 8px;text-align:right;vertical-align:top}
th{background:#eef1f5}td.l,th.l,td:first-child,th:first-child{text-align:left}
img{max-width:100%;display:block;margin:6px 0 12px}
.row{display:flex;flex-wrap:wrap;gap:4px 18px;align-items:flex-start}.row img{max-width:49%}
.notes li{font-size:13px;color:#444}
dl{font-size:13px}dt{font-weight:600;margin-top:6px}dd{margin-left:18px;color:#444}
nav a{margin-right:14px}
details summary{cursor:pointer;color:#3b6ea5;margin:6px 0}
.scroll{overflow-x:auto}
.ci{color:#777;font-size:11px;white-space:nowrap}
.badge{display:inline-block;background:#f4e3c1;color:#7a5600;border-radius:3px;padding:0 5px;font-size:10.5px;
margin-left:4px}
tr.flagged td,tr.small td{color:#8a8a8a;background:#fafafa}
.sig{background:#f9d9d6;color:#8a1c12}.ns{background:#e4ece4;color:#2f5d34}
td.hot,tr.collapsed td{background:#f8dcdc}td.hot{font-weight:600}
tr.sig-better td{background:#e8f5e9}tr.sig-worse td{background:#fdecea}
li.better,.good{color:#1b5e20}li.worse,.bad{color:#b71c1c}.bad{font-weight:600}
.warn{color:#b00020;font-weight:600}.muted{color:#777}
.bar{position:relative;height:9px;background:#eef1f5;width:140px;margin-top:3px}
.bar span{position:absolute;top:0;height:9px}.bar .in{background:#9fb7d3}
.bar .out{background:#3b6ea5;height:5px;top:2px}
ul.findings li{margin:3px 0}
.grid{display:flex;flex-wrap:wrap;gap:8px}.face{width:104px;font-size:11px;line-height:1.25}
.face img{width:96px;height:96px;margin:0;border-radius:3px}
.face .muted{display:block;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;width:100px}
.strip{display:flex;gap:6px;align-items:flex-start;margin:6px 0;padding:6px;border:1px solid #eee;border-radius:4px}
.strip .id{width:90px;font-size:12px;color:#555}
"""


def escape(text) -> str:
    """``text`` as HTML text (quotes too, so it is safe inside attributes)."""
    return _html.escape(str(text))


# --------------------------------------------------------------------------- images
def data_uri(data: bytes, mime: str = "image/png") -> str:
    """``data`` inlined as a ``data:`` URI (what an ``<img src>`` of a self-contained page holds)."""
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def figure_png(fig, *, dpi: int = 90, tight: bool = False) -> bytes:
    """PNG bytes of a matplotlib figure.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        Made with pyplot or as a bare ``Figure``; a pyplot figure is closed afterwards, so a
        page of many figures does not keep them all open.
    dpi : int
        Resolution of the PNG.
    tight : bool
        Crop to the drawn area (``bbox_inches="tight"``).  Leave it off for figures laid out
        with ``tight_layout``: cropping draws the figure a second time.

    Returns
    -------
    bytes
        The PNG file.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, **({"bbox_inches": "tight"} if tight else {}))
    if getattr(fig.canvas, "manager", None) is not None:  # pyplot keeps it open until closed
        import matplotlib.pyplot as plt
        plt.close(fig)
    return buffer.getvalue()


def figure_uri(fig, *, dpi: int = 90, tight: bool = False) -> str:
    """A matplotlib figure as a PNG ``data:`` URI (:func:`figure_png`): the one figure encoder."""
    return data_uri(figure_png(fig, dpi=dpi, tight=tight))


def img(src: str, alt: str, css_class: Optional[str] = None) -> str:
    """An ``<img>`` of ``src`` (a data URI) with its alternative text."""
    kind = f' class="{escape(css_class)}"' if css_class else ""
    return f'<img{kind} alt="{escape(alt)}" src="{src}">'


# --------------------------------------------------------------------------- page pieces
def header(title: str, meta: str = "") -> str:
    """The page's ``<h1>`` and the line under it; ``meta`` is HTML (escape what it quotes)."""
    return f"<h1>{escape(title)}</h1>" + (f'\n<p class="meta">{meta}</p>' if meta else "")


def notes(items: Iterable[str], title: str = "Notes", *, heading: str = "h3", anchor: Optional[str] = None,
          raw: Sequence[str] = ()) -> str:
    """A heading and a list: ``items`` are plain text (escaped), ``raw`` are HTML list items'
    contents added after them; an empty list says "None."."""
    entries = [f"<li>{escape(item)}</li>" for item in items] + [f"<li>{item}</li>" for item in raw]
    where = f' id="{escape(anchor)}"' if anchor else ""
    return f'<{heading}{where}>{escape(title)}</{heading}><ul class="notes">{"".join(entries) or "<li>None.</li>"}</ul>'


def whole_numbers(frame):
    """Float columns that hold only whole numbers (counts from ``describe()``, pixel sizes) as
    integers, so a count prints ``500``, not ``500.000``."""
    import numpy as np
    import pandas as pd

    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if pd.api.types.is_float_dtype(values):
            finite = values.dropna()
            if len(finite) and np.isfinite(finite).all() and (finite == finite.round()).all():
                out[column] = values.astype("Int64")
    return out


def table(frame, *, index: bool = False, digits: int = 3) -> str:
    """A DataFrame as an HTML table (whole numbers without decimals, others to ``digits``),
    scrolling sideways when wider than the page."""
    body = whole_numbers(frame).to_html(index=index, border=0, na_rep="", float_format=lambda v: f"{v:,.{digits}f}")
    return f'<div class="scroll">{body}</div>'


@dataclass
class Section:
    """A titled part of a page, built piece by piece (text, tables, figures, raw HTML)."""

    title: str
    parts: list[str] = field(default_factory=list)  # HTML snippets, in order

    def text(self, words: str) -> "Section":
        self.parts.append(f'<p class="note">{escape(words)}</p>')
        return self

    def table(self, frame, *, index: bool = False, digits: int = 3) -> "Section":
        self.parts.append(table(frame, index=index, digits=digits))
        return self

    def figure(self, fig, alt: str, *, dpi: int = 100) -> "Section":
        self.parts.append(img(figure_uri(fig, dpi=dpi, tight=True), alt))
        return self

    def raw(self, snippet: str) -> "Section":
        self.parts.append(snippet)
        return self

    def html(self) -> str:
        return "\n".join([f"<section><h2>{escape(self.title)}</h2>", *self.parts, "</section>"])


def document(title: str, body: str | Sequence[str]) -> str:
    """A whole page: ``<head>`` with the title and :data:`STYLE`, then ``body`` (HTML, or a list of
    HTML parts joined by newlines)."""
    text = body if isinstance(body, str) else "\n".join(body)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{STYLE}</style></head>\n<body>\n{text}\n</body></html>\n")


def write(path: str | Path, page: str) -> Path:
    """Write a page (its folder made if needed); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def write_sections(path: str | Path, title: str, sections: Sequence[Section], intro: Optional[str] = None) -> Path:
    """A page of a title, an optional introduction and ``sections`` (describe, explain)."""
    body = [f"<h1>{escape(title)}</h1>", *([f'<p class="note">{escape(intro)}</p>'] if intro else []),
            *(section.html() for section in sections)]
    return write(path, document(title, body))
