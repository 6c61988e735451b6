"""Names as text, never as markup: the one place the explorer escapes what a visitor did not write.

Model, layer, concept, category, task, dataset, metric and source names come from files anyone
can make (`lce extract --name`, `lce benchmarks add`, a probe's labels), and the explorer is a
server. Streamlit renders Markdown (links, images, KaTeX, colour directives) in page text,
captions, notes, metric and tab labels and tooltips; Plotly renders a subset of HTML (``<a>``,
``<b>``, ``<br>``...) in titles, legends, tick labels, point labels and hover text. A name put
into either unescaped can become a live link or a remote image in a visitor's browser.

- ``md(name)`` for Markdown: every ASCII punctuation character backslash-escaped (CommonMark
  allows that for each one), so no emphasis, link, image, HTML, math or directive can start
  inside the name; a word GFM would still turn into a link after parsing (``http://...``,
  ``www.``, an e-mail address) is shown as inline code.
- ``plot_text(name)`` (and ``plot_texts`` for a column) for Plotly: ``&``, ``<`` and ``>`` as
  entities, which Plotly shows as the characters.
- ``escape_figure_data(fig)``: the data arrays of every trace (categories on an axis, point
  labels, hover data) through ``plot_text``, as each chart is shown. Titles, legend entries and
  hover templates are written by the figure functions, which escape the names they quote.

Tables (``st.dataframe``), ``st.text``, select box options and image captions show plain text
and get names as they are.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from typing import Any

_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character


# What GFM turns into a link after parsing, escapes or not (http://, www., an e-mail address),
# and Streamlit's :shortcode: and :material/icon: text replacements.
_LINKLIKE = re.compile(r"://|www\.|@|:\w", re.IGNORECASE)


def md(text: object) -> str:
    """``text`` for Streamlit Markdown, shown as written: ``*bold*`` stays ``*bold*``.

    Backslash escapes stop every construct the parser sees, but not the replacements made on
    the parsed text afterwards (GFM's autolinks, Streamlit's shortcodes): a word that could
    become one is shown as inline code instead, whose content nothing rewrites."""
    return "".join(
        _code_span(part) if _LINKLIKE.search(part) else _PUNCTUATION.sub(r"\\\1", part)
        for part in re.split(r"(\s+)", str(text))
    )


def _code_span(text: str) -> str:
    """``text`` as a Markdown code span, fenced by more backticks than it holds."""
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text[:1] in ("`", " ") or text[-1:] in ("`", " ") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def plot_text(text: object) -> str:
    """``text`` for Plotly's text, titles and hover: ``<a href=...>`` is shown, not followed."""
    return html.escape(str(text), quote=False)


def plot_texts(texts: Iterable[object]) -> list[str | None]:
    """``plot_text`` of each item (None stays None: a gap in the data)."""
    return [None if t is None else plot_text(t) for t in texts]


# Trace attributes that carry data (never markup written by the figure functions).
_DATA_KEYS = (
    "x",
    "y",
    "z",
    "text",
    "hovertext",
    "customdata",
    "labels",
    "parents",
    "ids",
    "legendgroup",
)


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return plot_text(value)
    if isinstance(value, list | tuple):
        return [_escaped(v) for v in value]
    if hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "OUS":
        return [_escaped(v) for v in value.tolist()]  # a numpy array of strings
    return value


def escape_figure_data(fig: Any) -> Any:
    """``fig`` with the strings in every trace's data arrays escaped for Plotly (in place and
    returned). Numbers and numeric arrays are left as they are."""
    for trace in fig.data:
        for key in _DATA_KEYS:
            value = getattr(trace, key, None) if key in trace else None
            if value is not None:
                trace[key] = _escaped(value)
    for name in fig.layout:  # an axis's category order names the categories as the data does
        if name.startswith(("xaxis", "yaxis")) and fig.layout[name].categoryarray is not None:
            fig.layout[name].categoryarray = _escaped(fig.layout[name].categoryarray)
    return fig
