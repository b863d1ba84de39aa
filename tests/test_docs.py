"""The manual cannot drift from the code: its settings reference and every command it shows."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from loco_ad.config import PRESETS, knobs
from loco_ad.reference import field_docs, settings, settings_markdown, type_words
from loco_ad.run import main as run_main
from scripts.docs_hooks import command_parser, on_page_markdown

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"(?<!`)`((?:time |/usr/bin/time -v )?\.venv/bin/python\s[^`]+)`(?!`)")
PROGRAM = re.compile(r"(?:^|/)(experiments/\w+\.py)$")


def _flatten(tree: dict, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, value in tree.items():
        keys |= _flatten(value, f"{prefix}{name}.") if isinstance(value, dict) else {prefix + name}
    return keys


def shown_commands() -> list[tuple[str, str, list[str]]]:
    """(page, program, arguments) of every ``python -m loco_ad.X`` / ``experiments/X.py`` command the pages show.

    From the bash and console code blocks (a trailing backslash continues a line) and from inline code that
    starts with ``.venv/bin/python`` (or ``time`` it) and elides nothing.
    """
    commands = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        lines = [line for lang, block in FENCE.findall(text) if lang in ("bash", "console")
                 for line in block.replace("\\\n", " ").splitlines()]
        lines += [span.replace("\n", " ") for span in INLINE.findall(text) if "..." not in span]
        for line in lines:
            words = shlex.split(line.removeprefix("$ "), comments=True)
            for i, word in enumerate(words):
                program = words[i + 1] if word == "-m" and i + 1 < len(words) and words[i + 1].startswith("loco_ad.") else None
                match = PROGRAM.search(word)
                if program or match:
                    rest = words[i + 2:] if program else words[i + 1:]
                    end = next((j for j, w in enumerate(rest) if w in ("|", ">", "&&", ";", "2>&1")), len(rest))
                    commands.append((page.name, program or match.group(1), rest[:end]))
                    break
    return commands


def test_the_settings_page_lists_exactly_the_keys_print_config_prints(capsys) -> None:
    assert run_main(["--preset", "offline", "--print-config"]) == 0
    printed = _flatten(json.loads(capsys.readouterr().out))
    listed = set(re.findall(r"^\| `([^`]+)` \|", settings_markdown(), re.M))
    assert listed == printed
    assert len(listed) == len(knobs(PRESETS["offline"]))
    count = len(listed)
    assert f"Every knob ({count})" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"\n{count} knobs (the" in (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")


def test_every_setting_has_a_type_and_a_description() -> None:
    missing = [s.key for s in settings() if not s.description or not s.kind]
    assert not missing, f"settings without an Arguments entry in their dataclass's docstring: {missing}"


def test_each_presets_value_is_shown_as_set_writes_it() -> None:
    by_key = {s.key: s for s in settings()}
    assert by_key["segmenter.kind"].values == {"paper": "sam", "fast": "sam", "offline": "colour_clusters"}
    assert by_key["ensemble.scorers"].values["paper"] == "class_agnostic,foreground,histogram"
    assert by_key["ensemble.cap"].kind == "number or `none`"
    assert by_key["input_size"].values["offline"] == "none"
    assert by_key["ensemble.multipliers.colour"].description.endswith("`colour`'s.")


def test_docstring_entries_are_read_with_continuations_and_bases() -> None:
    from loco_ad.config import ClassAwareScorerConfig, EnsembleConfig

    docs = field_docs(ClassAwareScorerConfig)
    assert docs["n_neighbours"] == "nearest reference patches averaged per test patch."  # from PatchScorerConfig
    assert docs["reduce"].endswith("the largest per-class top-fraction mean).")
    assert "few_references" in field_docs(EnsembleConfig)["single_reference_scorers"]
    assert type_words(tuple[int, int]) == "2 integers"


def test_the_hook_fills_in_the_reference_the_readme_and_the_help() -> None:
    page = on_page_markdown("<!-- settings -->\n<!-- help: experiments/ablation.py -->\n", None, None, None)
    assert "<!--" not in page
    assert "| `ensemble.cap` |" in page and "usage: python experiments/ablation.py" in page
    home = on_page_markdown((ROOT / "docs" / "index.md").read_text(encoding="utf-8"), None, None, None)
    assert home.startswith("# loco_ad\n") and "bash scripts/setup.sh" in home
    assert "](docs/" not in home and "](getting-started.md)" in home


def test_the_readme_is_a_first_screen() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 150
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).is_file(), link
    assert "../shared" not in " ".join(line for lang, block in FENCE.findall(readme) if lang == "bash" for line in [block])


COMMANDS = shown_commands()


def test_the_pages_show_every_program() -> None:
    programs = {program for _, program, _ in COMMANDS}
    scripts = {f"experiments/{p.name}" for p in (ROOT / "experiments").glob("*.py")}
    assert {"loco_ad.run", "loco_ad.predict"} | scripts <= programs
    assert len(COMMANDS) >= 40


@pytest.mark.parametrize("page,program,arguments", COMMANDS, ids=[f"{p}:{c}" for p, c, _ in COMMANDS])
def test_every_command_shown_parses(page: str, program: str, arguments: list[str]) -> None:
    try:
        command_parser(program).parse_args(arguments)
    except SystemExit as stop:
        pytest.fail(f"{page}: {program} {' '.join(arguments)} does not parse (exit {stop.code})")


@pytest.mark.parametrize("program", sorted({program for _, program, _ in COMMANDS}))
def test_every_program_shown_answers_help(program: str) -> None:
    command = [sys.executable, "-m", program] if program.startswith("loco_ad.") else [sys.executable, program]
    # As printed: no PYTHONPATH, so a script that imports a sibling without the repository root on the path fails.
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    done = subprocess.run([*command, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120, env=environment)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:")
