"""The reference of every setting, generated from the configuration dataclasses (the manual's configuration page).

Each setting's description is its entry under ``Arguments`` in the docstring of
the dataclass that holds it (or of a base class); a setting of a group whose
dataclass has no entries at all (``ensemble.multipliers.colour``) takes the group's. So a new
setting appears in the manual with its type, each preset's value and the text
its author wrote, and ``--print-config`` and the manual list the same keys.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from loco_ad.config import PRESETS, Overrides, knobs, setting_text

_ENTRY = re.compile(r"^(\s+)([\w, ]+): (.*)$")


@dataclass(frozen=True)
class Setting:
    """One leaf setting.

    Arguments:
      key: its dotted key, as ``--set`` takes it.
      kind: its type in words.
      values: each preset's value, as ``--set`` writes it, by preset name.
      description: what it does (empty when nobody wrote it down).
    """

    key: str
    kind: str
    values: dict[str, str]
    description: str


def field_docs(cls: type) -> dict[str, str]:
    """The ``Arguments`` entries of the docstrings of ``cls`` and its bases: field name → text (one line)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        lines = (klass.__doc__ or "").splitlines()
        starts = [i for i, line in enumerate(lines) if line.strip().startswith("Arguments") and line.strip().endswith(":")]
        if not starts:
            continue
        indent, names = None, []
        for line in lines[starts[0] + 1:]:
            match = _ENTRY.match(line)
            if match and (indent is None or len(match.group(1)) == indent):
                indent, names = len(match.group(1)), [n.strip() for n in match.group(2).split(",")]
                docs.update({name: match.group(3).strip() for name in names})
            elif line.strip() and indent is not None and len(line) - len(line.lstrip()) > indent:
                docs.update({name: f"{docs[name]} {line.strip()}" for name in names})
            else:
                break
    return docs


def type_words(kind: Any) -> str:
    """A type annotation in words, as ``--set`` reads it: ``number``, ``one of `a`, `b```, ``list of words`` …"""
    if kind is Overrides:
        return "list of `key=value`"
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is typing.Union or origin is types.UnionType:
        return f"{type_words(next(a for a in args if a is not type(None)))} or `none`"
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {type_words(args[0])}s"
        return f"{len(args)} {type_words(args[0])}s" if len(set(args)) == 1 else ", ".join(map(type_words, args))
    return {int: "integer", float: "number", bool: "`true` or `false`", str: "word"}.get(kind, getattr(kind, "__name__", str(kind)))


def _leaves(config: Any, prefix: str, group_doc: str) -> list[tuple[str, Any, str]]:
    """(dotted key, annotation, description) of every leaf under the dataclass ``config``."""
    docs, hints = field_docs(type(config)), typing.get_type_hints(type(config))
    leaves = []
    for item in dataclasses.fields(config):
        key, doc = prefix + item.name, docs.get(item.name, "")
        value = getattr(config, item.name)
        if dataclasses.is_dataclass(value):
            leaves += _leaves(value, key + ".", doc)
        else:
            if not docs and group_doc:  # a group whose entries are all alike (PerScorer): the group's text
                doc = f"{group_doc.rstrip('.')}: `{item.name}`'s."
            leaves.append((key, hints[item.name], doc))
    return leaves


def settings() -> list[Setting]:
    """Every leaf setting of the configuration, in ``--print-config``'s order."""
    values = {name: knobs(preset) for name, preset in PRESETS.items()}
    base = next(iter(PRESETS.values()))
    return [
        Setting(key, type_words(kind), {name: setting_text(v[key]) for name, v in values.items()}, doc)
        for key, kind, doc in _leaves(base, "", "")
    ]


def _cell(text: str) -> str:
    """Markdown table cell text: ``double backticks`` become single, pipes escaped."""
    return re.sub(r"``([^`]+)``", r"`\1`", text).replace("|", "\\|")


def settings_markdown() -> str:
    """The reference as Markdown: one table per section (key, type, each preset's value, what it does)."""
    by_section: dict[str, list[Setting]] = {}
    for setting in settings():
        section = setting.key.split(".")[0] if "." in setting.key else "top level"
        by_section.setdefault(section, []).append(setting)
    presets = list(PRESETS)
    parts = []
    for section, rows in by_section.items():
        parts.append(f"### `{section}`\n" if section != "top level" else "### Top level\n")
        parts.append("| key | type | " + " | ".join(f"`{p}`" for p in presets) + " | what it does |")
        parts.append("|---|---|" + "---|" * len(presets) + "---|")
        for s in rows:
            values = " | ".join(f"`{_cell(s.values[p])}`" if s.values[p] else "(empty)" for p in presets)
            parts.append(f"| `{s.key}` | {_cell(s.kind)} | {values} | {_cell(s.description)} |")
        parts.append("")
    return "\n".join(parts)
