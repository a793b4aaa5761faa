"""Find the line of a key in a TOML file, so validation errors can name file, line and key.

`tomllib` keeps no positions; this scanner tracks table headers (`[a.b]`, `[[a]]`) and `key =` lines, which is
enough for the flat inventories we read (no multi-line inline tables).
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+|\"[^\"]*\"|'[^']*')\s*=")


def key_lines(text: str) -> dict[tuple, int]:
    """Map `(table, index, key)` to a 1-based line number; table headers map with key `None`.

    `table` is the dotted header ("cluster", "cluster.env", "nodes"); `index` counts `[[array]]` entries (0-based),
    and is 0 for plain tables. The top level is table "".
    """
    found: dict[tuple, int] = {}
    counts: dict[str, int] = {}
    table, index = "", 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            table = header.group(2).replace('"', "").replace("'", "").replace(" ", "")
            if header.group(1) == "[[":
                index = counts.get(table, -1) + 1
                counts[table] = index
            else:
                # a sub-table of the current array entry ([nodes.env] after [[nodes]]) keeps that entry's index
                parent = table.rsplit(".", 1)[0] if "." in table else None
                index = counts.get(parent, 0) if parent in counts else 0
            found.setdefault((table, index, None), lineno)
            continue
        key = _KEY.match(line)
        if key:
            name = key.group(1).strip("\"'")
            found.setdefault((table, index, name), lineno)
    return found
