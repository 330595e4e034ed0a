"""Keep a live chart's title readable: the status it shows wraps to the plot's width.

A chart says what is wrong in its title ("trades: price — reconnecting", the file-origin
hint of a saved page, gaps, errors). BokehJS draws a title on one canvas line and cuts
whatever passes the canvas's right edge, so a long status in a narrow chart (two or
three charts in a row, a phone) lost the part that names the problem. :func:`fit_title`
attaches a ``CustomJS`` that, whenever the title's text or the plot's inner width
changes, breaks the text into lines at spaces so that each line fits the plot's width
(measured with the title's own font on a canvas); BokehJS then gives the title panel the
lines' height. A ``CustomJS`` runs in the browser for every change, whoever made it
(the Python side of a Bokeh server session, a notebook's kernel through jupyter_bokeh,
or the livestream JavaScript client on a saved page): one mechanism for every target.
The Python model keeps the unwrapped text (titles are not synced back).
"""

from __future__ import annotations

from typing import Any

from bokeh.models import CustomJS

__all__ = ["FIT_TITLE_JS", "fit_title"]

#: Re-wraps ``title``'s text (newlines are this code's: a line break becomes a space, then
#: lines are filled word by word up to the plot's inner width). Setting the text runs the
#: callback once more, which finds nothing to change.
FIT_TITLE_JS = """
const width = plot.inner_width;
const text = title.text;
if (typeof text !== "string" || !(width > 0) || typeof document === "undefined") return;
const words = text.replace(/\\n/g, " ").split(" ");
const ctx = (window.__ls_title_ctx ??= document.createElement("canvas").getContext("2d"));
if (ctx == null) return;
const size = typeof title.text_font_size === "string" ? title.text_font_size : "13px";
const font = typeof title.text_font === "string" ? title.text_font : "helvetica";
const style = typeof title.text_font_style === "string" ? title.text_font_style : "bold";
ctx.font = `${style === "normal" ? "" : style} ${size} ${font}`;
const room = width - (title.offset || 0) - 2;
const lines = [];
let line = "";
for (const word of words) {
  const next = line ? line + " " + word : word;
  if (line && ctx.measureText(next).width > room) {
    lines.push(line);
    line = word;
  } else line = next;
}
lines.push(line);
const out = lines.join("\\n");
if (out !== text) title.text = out;
// BokehJS builds the new text's view asynchronously, and a plot does not lay itself out
// again when its own title changes size (the title is not one of its side panels): a
// title that gained or lost lines would be drawn over the plot or cut above it. Once the
// text's view exists, ask for a layout (the signal a changed min_border sends).
if (!title.__ls_fit_pending) {
  title.__ls_fit_pending = true;
  setTimeout(() => {
    title.__ls_fit_pending = false;
    plot.properties.min_border.change.emit();
  }, 0);
}
"""


def fit_title(fig: Any) -> Any:
    """Wrap ``fig``'s title to its inner width in the browser (see the module doc);
    returns ``fig``."""
    title = fig.title
    cb = CustomJS(args={"plot": fig, "title": title}, code=FIT_TITLE_JS)
    title.js_on_change("text", cb)
    fig.js_on_change("inner_width", cb)
    return fig
