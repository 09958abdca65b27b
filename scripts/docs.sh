#!/usr/bin/env bash
# Build the documentation site (mkdocs.yml, docs/) into site/ or the folder given as $1. --strict: a broken
# link or anchor, a missing page or an API reference that does not resolve fails the build.
# Needs mkdocs, mkdocs-material and mkdocstrings[python] (the `docs` extra); uses .venv's when there is one.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdocs=mkdocs
[ -x .venv/bin/mkdocs ] && mkdocs=.venv/bin/mkdocs
export NO_MKDOCS_2_WARNING=1  # Material's notice about MkDocs 2, printed on every build
"$mkdocs" build --strict --site-dir "${1:-site}"
