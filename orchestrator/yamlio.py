"""YAML as orch reads it (training configs, ChatGLM3 layouts, template files): safe types only, a key written twice
in one mapping refused with both line numbers (the later value would silently win), and every problem one line
`file:line: ...` in the caller's error type. Files are read by `orchestrator.textio` (a BOM is fine; other
encodings are refused with the advice to save as UTF-8).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from orchestrator.errors import OrchError, located
from orchestrator.textio import read_config_text


class _DuplicateKey(yaml.YAMLError):
    """A mapping key given twice: the key and both (1-based) lines."""

    def __init__(self, key: object, first: int, second: int) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key, self.first, self.second = key, first, second


class _UniqueKeyLoader(yaml.SafeLoader):  # never libyaml's CSafeLoader: deep nesting crashes it (SIGSEGV)
    """SafeLoader that refuses a key written twice in one mapping (merge keys `<<:` may still be overridden)."""

    def construct_mapping(self, node, deep=False):  # noqa: D102 - yaml's hook
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark.line + 1)
                except TypeError:
                    continue  # an unhashable key: SafeLoader's own error names it
                if first != key_node.start_mark.line + 1:
                    raise _DuplicateKey(key, first, key_node.start_mark.line + 1)
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, where: str, error: type[OrchError]) -> object:
    """Parse YAML text; any problem raises `error("where:line: ...")` in one line."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise error(located(where, exc.second, f"key {exc.key!r} is given twice (lines {exc.first} and "
                                               f"{exc.second}); remove one (the later would silently win)")) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        raise error(located(where, mark.line + 1 if mark else None, f"malformed YAML: {what}")) from None
    except yaml.YAMLError as exc:
        raise error(located(where, None, f"malformed YAML: {str(exc).splitlines()[0]}")) from None
    except RecursionError:
        raise error(located(where, None, "malformed YAML: nested too deeply")) from None
    except (ValueError, OverflowError) as exc:  # a value yaml cannot build (a 5000-digit int, month 13)
        raise error(located(where, None, f"malformed YAML: {exc}")) from None


def load_yaml(path: str | Path, error: type[OrchError]) -> object:
    """Read and parse a YAML file (see `parse_yaml`)."""
    try:
        text = read_config_text(path)
    except OrchError as exc:
        raise error(str(exc)) from None
    except FileNotFoundError:
        raise error(located(str(path), None, "file not found")) from None
    except OSError as exc:
        raise error(located(str(path), None, f"cannot read: {exc.strerror}")) from None
    return parse_yaml(text, str(path), error)
