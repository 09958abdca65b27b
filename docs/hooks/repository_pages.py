"""MkDocs hook: publish the repository's result pages and agent cards in the site, from where they live.

``results/`` and ``agents/`` stay the one source (they sit next to the data they describe and are read on GitHub
as they are); this hook adds their Markdown pages and PNG figures to the site under the same paths, so
``results/README.md`` becomes ``/results/`` and its relative links keep working. Nothing is copied into
``docs/``. CSV, JSON and YAML files are not published: the pages name them as repository paths.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

#: Folders of the repository published as they are, and the kinds of file taken from them.
FOLDERS = ("results", "agents")
SUFFIXES = (".md", ".png")


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add every ``.md`` and ``.png`` file under ``results/`` and ``agents/`` (repository root) to the site."""
    root = Path(config.config_file_path).resolve().parent
    for folder in FOLDERS:
        for path in sorted((root / folder).rglob("*")):
            if path.is_file() and path.suffix in SUFFIXES:
                src_uri = path.relative_to(root).as_posix()
                if files.get_file_from_path(src_uri) is None:  # a page of docs/ with that path wins
                    files.append(File(src_uri, str(root), config.site_dir, config.use_directory_urls))
    return files
