#!/usr/bin/env bash
# Build the documentation as CI does: every Sphinx warning is an error.
#
#   bash .ci/docs.sh            # needs lstmx importable and the docs extra:
#                               #   pip install -e ".[docs]"
#
# The HTML goes to docs/_build/html. The examples' pages show their plots when
# examples/output/ holds them (run the examples first); they build without them.
set -euo pipefail
cd "$(dirname "$0")/.."
# A fresh build each time: a stale environment can hide a warning of an unchanged page.
rm -rf docs/_build/html
python -m sphinx -W --keep-going -b html docs docs/_build/html

# The site must work offline: no page loads a script or a stylesheet from another host, and
# MathJax (which the equations need) is in the site itself.
python - <<'PY'
import pathlib
import re
import sys

html = pathlib.Path("docs/_build/html")
remote = [(str(page), url) for page in html.rglob("*.html")
          for url in re.findall(r'<(?:script|link)[^>]*(?:src|href)="([^"]+)"', page.read_text())
          if url.startswith(("http:", "https:", "//"))]
mathjax = html / "_static" / "mathjax" / "tex-chtml.js"
uses = 'src="_static/mathjax/tex-chtml.js' in (html / "equations.html").read_text()
if remote or not mathjax.is_file() or not uses:
    sys.exit(f"docs not offline: remote assets {remote[:5]}, MathJax bundled: "
             f"{mathjax.is_file()}, equations.html uses it: {uses}")
print("docs: every asset is local; MathJax from _static/mathjax")
PY
