"""Truncation and packing decisions over sample lengths: pure functions, no I/O."""

from __future__ import annotations

import bisect
import random

import numpy as np


def truncate(ids: np.ndarray, mask: np.ndarray, max_length: int, strategy: str) -> tuple[np.ndarray, np.ndarray]:
    """Cut a sample to `max_length`: `left` keeps the end, `right` (and `delete`, never reached) keep the start."""
    if len(ids) <= max_length:
        return ids, mask
    if strategy == "left":
        return ids[-max_length:], mask[-max_length:]
    return ids[:max_length], mask[:max_length]


def split_point(mask: np.ndarray) -> int:
    """Where a sample's output starts: the first token of its last loss run (the last answer; its length when it
    has none)."""
    starts = np.flatnonzero(np.diff(np.r_[0, np.asarray(mask, dtype=np.int8)]) == 1)
    return int(starts[-1]) if len(starts) else len(mask)


def truncate_io(ids: np.ndarray, mask: np.ndarray, max_input: int, max_output: int) -> tuple[np.ndarray, np.ndarray]:
    """ChatGLM3's truncation: the input (everything before the last answer) cut to its first `max_input` tokens,
    the last answer (and what follows it) to `max_output`, then concatenated."""
    cut = split_point(mask)
    keep = np.r_[0:min(cut, max_input), cut:min(len(ids), cut + max_output)]
    return ids[keep], mask[keep]


def pack_best_fit(lengths: np.ndarray, capacity: int, seed: int) -> list[list[int]]:
    """Group sample indices into rows of at most `capacity` tokens (best-fit decreasing), rows in seeded order.

    Open rows are kept by how much room they have left: a sorted list of distinct room sizes (at most
    `capacity` of them) and a stack of rows per size, so each placement is a bisect, whatever the row count.
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    rows: list[list[int]] = []
    rooms: list[int] = []  # distinct room sizes of open rows, ascending
    by_room: dict[int, list[int]] = {}
    for i in order.tolist():
        need = int(lengths[i])
        k = bisect.bisect_left(rooms, need)
        if k < len(rooms):
            room = rooms[k]
            row = by_room[room].pop()
            if not by_room[room]:
                del by_room[room], rooms[k]
            rows[row].append(i)
        else:
            room, row = capacity, len(rows)
            rows.append([i])
        left = room - need
        if left > 0:
            if left not in by_room:
                bisect.insort(rooms, left)
                by_room[left] = []
            by_room[left].append(row)
    random.Random(seed).shuffle(rows)
    return rows


def padded_share(lengths: np.ndarray, batch_size: int) -> float:
    """Share of real tokens when consecutive samples are padded to the longest of each batch."""
    lengths = np.asarray(lengths)
    if len(lengths) == 0:
        return 0.0
    padded = sum(int(lengths[b : b + batch_size].max()) * len(lengths[b : b + batch_size])
                 for b in range(0, len(lengths), batch_size))
    return float(lengths.sum()) / padded
