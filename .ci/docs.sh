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
