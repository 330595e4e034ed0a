"""Static pages that stream by themselves: ``dash.save("desk.html")``.

A saved page holds BokehJS and the livestream JavaScript client inline (no CDN,
no Python behind the page). Each chart is the same figure a notebook chart
draws (built by :class:`~livestream.views.chart_core.ChartCore`); a ``CustomJS``
on the document's ``DocumentReady`` event calls ``Livestream.startChart`` with
the chart's spec and BokehJS models. In the browser every view then subscribes
to the livestream server over one shared WebSocket and, at most ``fps`` times a
second, applies what arrived as one ``source.stream(rows, rollover=window)`` per
series (js/src/bokehChart.ts). Opening the page needs only a browser and the
livestream server.

The server's origin rule applies to these pages (docs/dashboards.md): a page
served from another host needs that host in ``allowed_origins``; a page opened
from a ``file://`` URL sends ``Origin: null`` and needs ``"null"`` listed
explicitly. So does its Host rule: a ``url`` naming the server by a name other
than an IP address, ``localhost`` or the server's own names (a proxy's public
name) needs that name in the server's ``allowed_hosts``. Tokens: the page
carries the subscribe token it is given (by default the connection's), in clear
text, like any credential in a page; a viewer's own token in the page address
(``desk.html#livestream_token=TOKEN``, or ``?livestream_token=``) replaces it, so a
page saved with ``token=""`` holds no credential and each viewer brings theirs.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bokeh.document import Document
from bokeh.embed import file_html
from bokeh.events import DocumentReady
from bokeh.layouts import column, row
from bokeh.models import CustomJS, Div
from bokeh.resources import INLINE, Resources

from ..views.browser import BUNDLE, START_JS, livestream_js, view_models
from ..views.chart_core import ChartCore
from ..views.spec import ViewSpec
from . import layout as L

__all__ = ["PAGE_POINTS_JS", "save_dashboard", "static_document", "static_page"]

# (file_html puts "{% extends base %}" before a template given as a string)
_PAGE_TEMPLATE = """{% block postamble %}
{{ livestream_head | safe }}
{% endblock %}
"""


def _script(js: str) -> str:
    return "<script>\n" + js.replace("</script", "<\\/script") + "\n</script>"


def _as_spec(item: Any) -> Any:
    """A ChartCore becomes a chart ViewSpec; anything else is left to the layout's rules."""
    if isinstance(item, ChartCore):
        return ViewSpec.of(item.sub, "chart", **item.options)
    if isinstance(item, (list, tuple)):
        return type(item)(_as_spec(i) for i in item)
    return item


def _server_of(specs: Iterable[Any]) -> tuple[str | None, str | None]:
    for s in specs:
        if getattr(s, "url", None):
            return s.url, getattr(s, "token", None)
    return None, None


#: A JavaScript function for ``page.evaluate``: the points held by each Bokeh document's plot
#: sources on a page (series the page added in JS included), one number per document. The
#: tests and ``benchmarks/bench_viewers.py`` read a live page's growth with it.
PAGE_POINTS_JS = """
() => {
  const B = window.Bokeh;
  if (!B || !B.documents) return null;
  const out = [];
  for (const doc of B.documents) {
    // every plot's renderers' sources (series the page added in JS included)
    const seen = new Set();
    let total = 0;
    for (const m of doc._all_models.values()) {
      if (!Array.isArray(m.renderers)) continue;
      for (const r of m.renderers) {
        const s = r.data_source;
        if (s && !seen.has(s) && s.data && "x" in s.data) {
          seen.add(s);
          total += s.get_length() || 0;
        }
      }
    }
    out.push(total);
  }
  return out;
}
"""


# -- pages --------------------------------------------------------------------------------------


def static_document(
    views: Any,
    *,
    url: str | None = None,
    token: str | None = None,
    encoding: str = "arrow",
    title: str | None = None,
    theme: str = "light",
    snapshot: bool = False,
) -> Document:
    """A Bokeh document of ``views`` whose charts and tables subscribe to ``url`` by
    themselves once the page is ready.

    ``views``: a Dashboard's layout tree, or what ``Dashboard(...)`` accepts (live
    charts and tables, view specs, ChartCores, text, nested lists = rows/columns,
    Row/Column/Tabs). ``url``/``token`` default to the views' connection.
    ``snapshot=True`` also embeds the data the views hold now (shown until the
    server answers); by default the page starts empty and fills with the server's
    snapshot.
    """
    from bokeh.models import GlobalInlineStyleSheet, TabPanel, Tabs

    root = views if isinstance(views, (L.Row, L.Column, L.Tabs, L.ViewSpec, L.Text)) \
        else L.normalize(_as_spec(views if isinstance(views, (list, tuple)) else [views]))
    specs = list(L.iter_specs(root))
    d_url, d_token = _server_of(specs)
    url = url or d_url
    if token is None:
        token = d_token
    if not url:
        raise ValueError("no livestream server URL: pass url='ws://host:port/ws'")
    if not url.startswith(("ws://", "wss://")):
        raise ValueError(f"livestream URLs start with ws:// or wss://, got {url!r}")
    starts: list[dict[str, Any]] = []

    def model(node: Any) -> Any:
        if isinstance(node, L.ViewSpec):
            m, args = view_models(node, snapshot=snapshot)
            if args is not None:
                starts.append(args)
            return m
        if isinstance(node, L.Text):
            return Div(text=node.html(), sizing_mode="stretch_width")
        if isinstance(node, L.Row):
            return row(*[model(c) for c in node.children], sizing_mode="stretch_width")
        if isinstance(node, L.Column):
            return column(*[model(c) for c in node.children], sizing_mode="stretch_width")
        if isinstance(node, L.Tabs):
            return Tabs(tabs=[TabPanel(child=model(c), title=t) for t, c in node.tabs],
                        sizing_mode="stretch_width")
        raise TypeError(f"not a dashboard node: {node!r}")

    body = model(root)
    children = [body]
    if title:
        children.insert(0, Div(text=f"<h2 style='margin:4px 0'>{_escape(title)}</h2>",
                               sizing_mode="stretch_width"))
    sheets = []
    if theme == "dark":
        sheets.append(GlobalInlineStyleSheet(css=L.DARK_CSS))
    doc = Document()
    doc.add_root(column(*children, sizing_mode="stretch_width", stylesheets=sheets))
    if title:
        doc.title = title
    server = {"url": url, "encoding": encoding}
    if token:
        server["token"] = token
    doc.js_on_event(DocumentReady, CustomJS(
        args={"views": starts, "server_json": json.dumps(server)}, code=START_JS))
    return doc


def _escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def static_page(
    views: Any,
    *,
    url: str | None = None,
    token: str | None = None,
    encoding: str = "arrow",
    title: str | None = None,
    theme: str = "light",
    snapshot: bool = False,
    resources: Resources | None = None,
    livestream_head: str | None = None,
) -> str:
    """A standalone HTML page of ``views`` that streams by itself (see the module doc).

    BokehJS and the livestream client are inline by default (``resources=INLINE``);
    ``livestream_head`` replaces the inline client ``<script>``. Works without a
    Dashboard, e.g. ``static_page([trades.chart(x="ts", y="price")])``.
    """
    doc = static_document(views, url=url, token=token, encoding=encoding, title=title,
                          theme=theme, snapshot=snapshot)
    head = livestream_head if livestream_head is not None else _script(livestream_js())
    return file_html(doc, resources or INLINE, title=title or "livestream",
                     template=_PAGE_TEMPLATE, template_variables={"livestream_head": head})


def save_dashboard(
    dash: Any,
    path: str | Path,
    *,
    url: str | None = None,
    token: str | None = None,
    inline: bool = True,
    encoding: str = "arrow",
    snapshot: bool = False,
) -> Path:
    """Write ``dash`` (a :class:`~livestream.dashboard.Dashboard`, or anything with
    ``.views`` and ``.title``) as a page that subscribes
    to the livestream server by itself; returns the path written.

    ``inline=True`` (default) puts BokehJS and the livestream client in the page: one
    self-contained file. ``inline=False`` copies them into ``<name>_files/`` beside the
    page and links them (smaller pages when many are published; no CDN either way).
    """
    path = Path(path)
    views = getattr(dash, "root", None) or getattr(dash, "views", dash)
    title = getattr(dash, "title", None)
    theme = getattr(dash, "theme", "light")
    if inline:
        html = static_page(views, url=url, token=token, encoding=encoding, title=title,
                           theme=theme, snapshot=snapshot)
    else:
        assets = path.parent / f"{path.stem}_files"
        assets.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(BUNDLE, assets / "livestream.js")
        html = static_page(
            views, url=url, token=token, encoding=encoding, title=title, theme=theme,
            snapshot=snapshot,
            resources=Resources(mode="absolute"),
            livestream_head=f'<script src="{assets.name}/livestream.js"></script>')
        html = _localise_bokeh(html, assets)
    path.write_text(html, encoding="utf-8")
    return path


def _localise_bokeh(html: str, assets: Path) -> str:
    """Copy the BokehJS files an absolute-resources page references into ``assets`` and
    point the page at the copies (relative URLs)."""
    import re

    import bokeh

    static = Path(bokeh.__file__).resolve().parent / "server" / "static"

    def repl(m: re.Match[str]) -> str:
        src = Path(m.group(1).split("?", 1)[0])
        try:
            src.resolve().relative_to(static)
        except ValueError:
            return m.group(0)
        shutil.copyfile(src, assets / src.name)
        return f'src="{assets.name}/{src.name}"'

    return re.sub(r'src="([^"]+\.js[^"]*)"', repl, html)
