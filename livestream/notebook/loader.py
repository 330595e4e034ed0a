"""Load BokehJS into the notebook page, inline, once.

jupyter_bokeh's widget renders with the page's ``window.Bokeh``; it does not
bring BokehJS itself, and ``output_notebook()`` fetches it from a CDN by default
(which shows "javascript error" without internet). livestream publishes the
BokehJS that ships inside the installed ``bokeh`` package as a display output
the first time a view is created in a kernel, so users never call
``output_notebook()`` and nothing is fetched from a CDN.

The output uses jupyter_bokeh's ``application/vnd.bokehjs_load.v0+json``
renderer (JupyterLab 4, Notebook 7) and is guarded so that a page which already
has this BokehJS version does not evaluate it again.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

LOAD_MIME = "application/vnd.bokehjs_load.v0+json"

_loaded = False

#: BokehJS bundles to load besides the core one ("gl", "widgets", "tables", "api").
DEFAULT_EXTRAS: tuple[str, ...] = ()


@lru_cache(maxsize=8)
def bokehjs_source(extras: tuple[str, ...] = DEFAULT_EXTRAS) -> str:
    """The guarded inline JavaScript that defines ``window.Bokeh``."""
    import bokeh

    static = Path(bokeh.__file__).parent / "server" / "static" / "js"
    parts = [(static / "bokeh.min.js").read_text(encoding="utf-8")]
    for extra in extras:
        parts.append((static / f"bokeh-{extra}.min.js").read_text(encoding="utf-8"))
    version = bokeh.__version__
    body = "\n".join(f"(function(){{\n{p}\n}}).call(window);" for p in parts)
    return (
        f"if (window.Bokeh === undefined || window.Bokeh.version !== {version!r}"
        f" || window.__livestream_bokeh_extras__ !== {','.join(extras)!r}) {{\n"
        f"{body}\n"
        f"window.__livestream_bokeh_extras__ = {','.join(extras)!r};\n"
        "}\n"
    )


def bokehjs_bundle(extras: tuple[str, ...] = DEFAULT_EXTRAS) -> dict[str, str]:
    """The display-data bundle that loads BokehJS inline."""
    import bokeh

    return {
        LOAD_MIME: bokehjs_source(tuple(extras)),
        "text/plain": f"BokehJS {bokeh.__version__} (inline)",
    }


def load_bokehjs(force: bool = False, extras: tuple[str, ...] = DEFAULT_EXTRAS) -> bool:
    """Publish BokehJS into the notebook page (once per kernel unless ``force``).

    Called automatically when a chart is created. Call it with ``force=True``
    after reloading the browser page while the kernel kept running. Returns
    whether a loader output was published (False outside a kernel).
    """
    global _loaded
    from ._runtime import in_kernel

    if not in_kernel() or (_loaded and not force):
        return False
    from IPython.display import publish_display_data

    publish_display_data(bokehjs_bundle(tuple(extras)), metadata={LOAD_MIME: {}})
    _loaded = True
    return True


def bokehjs_loaded() -> bool:
    """Whether this kernel has already published the loader."""
    return _loaded
