"""MkDocs hooks (``hooks:`` in mkdocs.yml): the parts of the manual that are generated from the code.

A page holding ``<!-- readme -->`` becomes the repository's README.md (its
links into ``docs/`` made relative to the site, so the home page and the README
are one text); in a page's Markdown, ``<!-- settings -->`` becomes the reference of every
setting (``loco_ad.reference.settings_markdown``) and ``<!-- help: PROGRAM -->``
the ``--help`` of ``python -m loco_ad.run`` (PROGRAM ``loco_ad.run``) or of
``experiments/ablation.py`` (PROGRAM ``experiments/ablation.py``), so options
and settings added to the code appear in the manual without anyone writing them.
The experiments are imported from this checkout; ``loco_ad`` must be this
checkout's too (installed from it, or ``PYTHONPATH=.``), else the build warns.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]

HELP = re.compile(r"<!-- help: (\S+) -->")
HELP_WIDTH = "100"  # columns of the --help text in the manual
log = logging.getLogger("mkdocs.plugins.loco_ad")


def module_name(program: str) -> str:
    """The module of a program as the manual writes it: ``loco_ad.run`` stays, ``experiments/x.py`` → ``experiments.x``."""
    return program.removesuffix(".py").replace("/", ".")


def command_parser(program: str) -> argparse.ArgumentParser:
    """The argument parser of ``program`` (``loco_ad.run``, ``experiments/ablation.py``): its module's ``build_parser()``."""
    if str(ROOT) not in sys.path:  # here, not at import: mkdocs puts sys.path back after loading its hooks
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(module_name(program)).build_parser()


def help_text(program: str) -> str:
    """``program --help`` as a terminal HELP_WIDTH columns wide prints it, the same for any user (``~``, no ``$LOCO_AD_CACHE``)."""
    with mock.patch.dict(os.environ, {"COLUMNS": HELP_WIDTH}):
        for name in ("LOCO_AD_CACHE", "XDG_CACHE_HOME"):
            os.environ.pop(name, None)
        return command_parser(program).format_help().replace(str(Path.home()), "~")


def readme_markdown() -> str:
    """README.md, its links into ``docs/`` made relative to the site."""
    return (ROOT / "README.md").read_text(encoding="utf-8").replace("](docs/", "](")


def on_config(config):
    """Warn (a failure under ``--strict``) when the ``loco_ad`` imported is not this checkout's."""
    import loco_ad

    if Path(loco_ad.__file__).resolve().parents[1] != ROOT:
        log.warning("documenting loco_ad from %s, not from this checkout %s; run with PYTHONPATH=%s",
                    Path(loco_ad.__file__).parent, ROOT, ROOT)
    return config


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Replace the markers of the page by the generated text."""
    from loco_ad.reference import settings, settings_markdown

    if "<!-- readme -->" in markdown:
        markdown = readme_markdown()
    if "<!-- settings -->" in markdown:
        undocumented = [s.key for s in settings() if not s.description]
        if undocumented:
            log.warning("settings without a description (an Arguments entry in their dataclass's docstring): %s",
                        ", ".join(undocumented))
        markdown = markdown.replace("<!-- settings -->", settings_markdown())
    return HELP.sub(lambda match: f"```text\n{help_text(match.group(1)).rstrip()}\n```", markdown)
