"""README's "Your own data" section runs as written: its capture block is a valid config section, and
every flag its commands use exists in the commands' real parsers (read out of README.md itself)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from edge_har.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def _section() -> str:
    text = README.read_text()
    start = text.index("## Your own data")
    return text[start : text.index("\n## ", start + 1)]


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", _section(), flags=re.S)


def test_the_capture_block_is_a_valid_capture_section():
    from edge_har.device.capture import CaptureConfig

    (block,) = _blocks("yaml")
    capture = CaptureConfig.model_validate(yaml.safe_load(block)["capture"])
    assert capture.unsure_below == 0.6 and capture.max_windows == 2000 and capture.near_tie == 0.1


def test_every_flag_of_the_sections_commands_exists():
    text = _section()
    commands = re.findall(r"edge-har (record|convert|serve)\b((?:\\\n|[^\n`])*)", text)
    assert {c for c, _ in commands} >= {"record", "convert", "serve"}
    for command, rest in commands:
        parser = build_parser(command)
        sub = next(a for a in parser._actions if a.dest == "command").choices[command]  # noqa: SLF001
        known = {flag for action in sub._actions for flag in action.option_strings}  # noqa: SLF001
        for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest):
            assert flag in known, f"README: edge-har {command} {flag}: no such option"
