"""Reading policy and evidence files (JSON or YAML) and pointing at the line at fault.

``load`` returns the data and a ``Located`` helper that turns the dotted field path of an
``AssessmentError`` (``levels.advanced.verification``, ``evidence[3].score``) into the
line of the file where that field is written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["FileError", "Loaded", "dump", "load", "load_text"]


class FileError(ValueError):
    """A file that cannot be read or parsed; ``line`` is 1-based when known."""

    def __init__(
        self, source: str, message: str, *, line: int | None = None, field: str = ""
    ) -> None:
        where = source if line is None else f"{source}, line {line}"
        if field:
            where += f', field "{field}"'
        super().__init__(f"{where}: {message}")
        self.source = source
        self.line = line
        self.field = field
        self.message = message


_SEGMENT = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


@dataclass(frozen=True)
class Loaded:
    """A loaded file: its data, and its node tree for finding lines (None if unknown)."""

    source: str
    data: Any
    tree: yaml.Node | None

    def line_of(self, field: str) -> int | None:
        """The 1-based line of ``field`` (a dotted path), or of its nearest parent found."""
        if self.tree is None:
            return None
        node = self.tree
        line = node.start_mark.line + 1
        tokens = [(m[1], m[2]) for m in _SEGMENT.finditer(field)]
        i = 0
        while i < len(tokens):
            index, key = tokens[i]
            if isinstance(node, yaml.SequenceNode) and index is not None:
                position = int(index)
                if position >= len(node.value):
                    break
                node = node.value[position]
                line = node.start_mark.line + 1
                i += 1
                continue
            if not isinstance(node, yaml.MappingNode) or key is None:
                break
            # Keys may contain dots ("essay.argument"): try the longest run of tokens first.
            for end in range(len(tokens), i, -1):
                run = tokens[i:end]
                if any(idx is not None for idx, _ in run):
                    continue
                name = ".".join(k for _, k in run)
                match = next((kv for kv in node.value if str(kv[0].value) == name), None)
                if match is not None:
                    line = match[0].start_mark.line + 1
                    node = match[1]
                    i = end
                    break
            else:
                break
        return line

    def error(self, field: str, message: str) -> FileError:
        """A ``FileError`` for ``field`` with its line."""
        return FileError(self.source, message, line=self.line_of(field), field=field)


def _tree(text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None  # some valid JSON is not YAML (tabs); lines are then unknown


def load_text(text: str, source: str, *, fmt: str = "") -> Loaded:
    """Parse JSON or YAML text (``fmt`` "json"/"yaml", or guessed from the text).

    Raises:
        FileError: the text is not valid JSON/YAML, with the line of the syntax error.
    """
    fmt = fmt or ("json" if text.lstrip()[:1] in ("{", "[") else "yaml")
    if fmt == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FileError(source, f"not valid JSON: {exc.msg}", line=exc.lineno) from None
        return Loaded(source, data, _tree(text))
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = None if mark is None else mark.line + 1
        raise FileError(
            source, f"not valid YAML: {exc.problem or exc.context}", line=line
        ) from None
    except yaml.YAMLError as exc:  # pragma: no cover - PyYAML marks its parse errors
        raise FileError(source, f"not valid YAML: {exc}") from None
    if data is None:
        raise FileError(source, "the file is empty")
    return Loaded(source, data, _tree(text))


def load(path: Path) -> Loaded:
    """Read a JSON (``.json``) or YAML (``.yaml``, ``.yml``) file.

    Raises:
        FileError: missing, unreadable, or not valid JSON/YAML.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise FileError(str(path), "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FileError(str(path), f"cannot be read: {exc}") from None
    suffix = path.suffix.lower()
    fmt = "json" if suffix == ".json" else "yaml" if suffix in (".yaml", ".yml") else ""
    return load_text(text, str(path), fmt=fmt)


def dump(data: Any, fmt: str) -> str:
    """``data`` as JSON (indented) or YAML (block style, keys in the given order)."""
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
