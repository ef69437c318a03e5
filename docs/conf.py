"""Sphinx configuration of the lstmx documentation.

Build (what CI runs, in ``.ci/docs.sh``)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Nothing is fetched from the network while building or reading: no intersphinx, no theme
assets from a CDN, and MathJax is served from the site itself (``sphinx-mathjax-offline``
copies MathJax 3 into ``_static/mathjax``), so the equations render on an offline machine.
"""
import os
import sys

DOCS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DOCS)
# The checkout's lstmx (built in place, or installed with "pip install -e"): the API pages
# document the code next to these docs, not some other installed copy.
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(DOCS, "_ext"))

import lstmx  # noqa: E402

project = "lstmx"
author = "the lstmx developers"
copyright = "the lstmx developers, BSD-3-Clause"
version = release = lstmx.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax from _static, not from a CDN
    "numpydoc",
    "myst_parser",
    "lstmx_docs",  # docs/_ext: optional-toctree, the examples gallery
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_templates", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]
# Code blocks without a language (plain text, pseudo-code) are left unhighlighted.
highlight_language = "none"
pygments_style = "sphinx"
nitpicky = False

# The copy of MathJax that sphinx-mathjax-offline puts in _static (chosen there too; said
# here so that the page <script> is visibly local).
mathjax_path = "mathjax/tex-chtml.js"

# -- MyST (the Markdown pages) -------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3  # [text](page.md#a-heading) links work
myst_dmath_double_inline = True

# -- API reference -------------------------------------------------------------------------
autosummary_generate = True  # stubs in docs/generated/ (not committed)
autosummary_imported_members = False
autodoc_typehints = "none"  # the numpydoc sections say the types and shapes
autodoc_member_order = "bysource"
numpydoc_show_class_members = False  # the class template lists members itself
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# -- HTML ------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"lstmx {release}"
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc", "sourcelink"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
}
# No section navigation on the pages that have no sections below them: it was an empty
# column that squeezed the page (the API reference and the gallery keep theirs).
html_sidebars = {page: [] for page in ("index", "install", "tutorial", "equations",
                                       "interop", "performance", "guarantees")}
html_static_path = ["_static"]
html_css_files = ["lstmx.css"]
html_show_sourcelink = True
html_copy_source = True


def _skip_scikit_learn_members(app, what, name, obj, skip, options):
    """The estimators of lstmx.sklearn inherit scikit-learn's plumbing (metadata routing,
    get_params, ...), documented by scikit-learn, whose cross-references do not resolve
    here: list only what lstmx defines."""
    if (getattr(obj, "__module__", None) or "").startswith("sklearn."):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_scikit_learn_members)
