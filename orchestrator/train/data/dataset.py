"""`build_sft_datasets`: from a `DataSpec` and a tokenizer to torch datasets of masked (and packed) rows.

Items are dicts of python lists: `input_ids`, `labels` (-100 where masked) and, when packing, `position_ids`
restarting at 0 for every sample inside a row. Tokens come from memory-mapped indexes built once (file lock)
in `spec.cache_dir`; truncation and packing are decided here from the sample lengths alone.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from orchestrator.errors import DataError
from orchestrator.train.data import cache
from orchestrator.train.data.encoding import IGNORE_INDEX
from orchestrator.train.data.index import TokenIndex
from orchestrator.train.data.pack import pack_best_fit, padded_share, split_point, truncate, truncate_io
from orchestrator.train.data.report import DataReport
from orchestrator.train.data.sources import open_source
from orchestrator.train.data.spec import STAGES, DataSpec
from orchestrator.train.data.templates import resolve_template, with_system

Entry = tuple[int, int]  # (source number, sample number)


class _Rows:
    """Shared access to samples across several indexes, truncated and labelled for one stage."""

    def __init__(self, sources: list[TokenIndex], spec: DataSpec, stage: str) -> None:
        self.sources, self.spec, self.stage = sources, spec, stage

    def sample(self, entry: Entry) -> tuple[list[int], list[int]]:
        """(input_ids, labels) of one sample after truncation."""
        ids, mask = _cut(*self.sources[entry[0]][entry[1]], self.spec)
        labels = ids if self.stage == "pt" else np.where(mask.astype(bool), ids, IGNORE_INDEX)
        return ids.tolist(), labels.tolist()


class SFTDataset(torch.utils.data.Dataset):
    """One sample per item: `input_ids`, `labels`."""

    def __init__(self, rows: _Rows, entries: list[Entry]) -> None:
        self.rows, self.entries = rows, entries

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        ids, labels = self.rows.sample(self.entries[i])
        return {"input_ids": ids, "labels": labels}


class PackedDataset(torch.utils.data.Dataset):
    """Several samples per item, concatenated: `input_ids`, `labels`, `position_ids` restarting per sample."""

    def __init__(self, rows: _Rows, packs: list[list[Entry]]) -> None:
        self.rows, self.packs = rows, packs

    def __len__(self) -> int:
        return len(self.packs)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        item: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": []}
        for entry in self.packs[i]:
            ids, labels = self.rows.sample(entry)
            item["input_ids"] += ids
            item["labels"] += labels
            item["position_ids"] += list(range(len(ids)))
        return item


def _io_caps(spec: DataSpec) -> bool:
    """Whether input and output are cut separately (ChatGLM3's max_input_length / max_output_length)."""
    return bool(spec.max_input_length and spec.max_output_length)


def _cut(ids: np.ndarray, mask: np.ndarray, spec: DataSpec) -> tuple[np.ndarray, np.ndarray]:
    """One sample truncated as `spec` says."""
    if _io_caps(spec):
        return truncate_io(ids, mask, spec.max_input_length, spec.max_output_length)
    return truncate(ids, mask, spec.cap, spec.truncation_strategy)


def _cut_lengths(index: TokenIndex, spec: DataSpec) -> np.ndarray:
    """Every sample's length after truncation."""
    raw = index.lengths
    if not _io_caps(spec):
        return np.minimum(raw, spec.cap)
    cuts = np.array([split_point(index.mask[a:b]) for a, b in zip(index.offsets[:-1], index.offsets[1:])],
                    dtype=np.int64)
    return np.minimum(cuts, spec.max_input_length) + np.minimum(raw - cuts, spec.max_output_length)


def _select(sources: list[TokenIndex], spec: DataSpec, stage: str,
            report: DataReport) -> tuple[list[Entry], np.ndarray]:
    """All usable (entry, truncated length) pairs after the truncation strategy; counts go into `report`."""
    entries, lengths = [], []
    deletes = spec.truncation_strategy == "delete" and not _io_caps(spec)
    for s, index in enumerate(sources):
        cut = _cut_lengths(index, spec)
        over = cut < index.lengths
        report.truncated[spec.truncation_strategy] += int(over.sum())
        keep = np.flatnonzero(~over) if deletes else np.arange(len(cut))
        for i in keep.tolist():
            if stage == "sft" and over[i] and not _cut(*index[i], spec)[1].any():
                report.dropped_no_loss += 1
                continue
            entries.append((s, i))
            lengths.append(int(cut[i]))
    return entries, np.array(lengths, dtype=np.int64)


def _take(entries: list[Entry], lengths: np.ndarray, n: int, seed: int) -> tuple[list[Entry], np.ndarray]:
    """`n` entries drawn with a seeded RNG, in their original order (all of them when n is -1 or too many)."""
    if n < 0 or n >= len(entries):
        return entries, lengths
    chosen = np.sort(np.random.default_rng(seed).choice(len(entries), size=n, replace=False))
    return [entries[i] for i in chosen.tolist()], lengths[chosen]


def _split_eval(entries: list[Entry], lengths: np.ndarray, ratio: float, seed: int):
    """Hold out `round(n * ratio)` entries, chosen with a seeded RNG."""
    n_eval = round(len(entries) * ratio)
    perm = np.random.default_rng(seed).permutation(len(entries))
    held = np.zeros(len(entries), dtype=bool)
    held[perm[:n_eval]] = True
    pick = lambda flag: ([e for e, h in zip(entries, held) if h == flag], lengths[held == flag])  # noqa: E731
    return pick(False), pick(True)


def _make(rows: _Rows, entries: list[Entry], lengths: np.ndarray, spec: DataSpec, report: DataReport | None):
    """A packed or plain dataset over `entries`; fills packing figures into `report` when given."""
    if not spec.packing:
        if report is not None:
            report.real_token_share = padded_share(lengths, 8)
        return SFTDataset(rows, entries)
    packs = pack_best_fit(lengths, spec.cap, spec.seed)
    if report is not None:
        report.packed_rows = len(packs)
        report.real_token_share = float(lengths.sum()) / (len(packs) * spec.cap) if packs else 0.0
    return PackedDataset(rows, [[entries[i] for i in row] for row in packs])


def _opener(spec: DataSpec, tokenizer):
    """A function opening data entries (paths relative to `spec.base_dir`) as cached token indexes; after the
    last one, `open_all.evict()` keeps the cache under its size bound (the first process on each node)."""
    template = with_system(resolve_template(spec.template, tokenizer), spec.system)
    base = Path(spec.base_dir)
    cache_dir = Path(spec.cache_dir) if spec.cache_dir else cache.default_cache_dir()
    used: set[Path] = set()

    def open_all(names: list) -> list[TokenIndex]:
        with cache.private_inside(cache_dir):
            return [open_source(n, base, cache_dir, tokenizer, template, spec.seed, spec.skip_bad, used)
                    for n in names]

    def evict() -> None:
        if int(os.environ.get("LOCAL_RANK", "0")) == 0:
            with cache.private_inside(cache_dir):  # its lock files
                cache.evict(cache_dir, used)

    open_all.evict = evict
    return open_all


def per_sample(dataset: SFTDataset | PackedDataset) -> SFTDataset:
    """The same samples one per item (a packed dataset unpacked), e.g. to generate an answer for each prompt."""
    if isinstance(dataset, PackedDataset):
        return SFTDataset(dataset.rows, [entry for pack in dataset.packs for entry in pack])
    return dataset


def build_test_dataset(spec: DataSpec, tokenizer, stage: str = "sft") -> SFTDataset:
    """`spec.test` as a per-sample dataset (never packed), truncated like the training data."""
    if not spec.test:
        raise DataError("no test file given (data.test is empty)")
    sources = _opener(spec, tokenizer)([spec.test])
    entries, _ = _select(sources, spec, stage, DataReport(truncation_strategy=spec.truncation_strategy))
    return SFTDataset(_Rows(sources, spec, stage), entries)


def build_sft_datasets(spec: DataSpec, tokenizer, stage: str = "sft"):
    """Build (train_dataset, eval_dataset or None, DataReport) for `stage` `sft` (assistant loss) or `pt` (all).

    The padded real-token share in the report assumes batches of 8 consecutive samples.
    """
    if stage not in STAGES:
        raise DataError(f"unknown stage {stage!r}; known: {', '.join(STAGES)}")
    if not spec.train:
        raise DataError("no training data given (data.train is empty)")
    open_all = _opener(spec, tokenizer)
    report = DataReport(truncation_strategy=spec.truncation_strategy, sources=list(spec.train) + list(spec.added))
    train_sources = open_all(spec.train)
    eval_sources = open_all(spec.eval)
    added_sources = open_all(spec.added)
    open_all.evict()
    sources = train_sources + eval_sources + added_sources
    for index in sources:
        report.samples_read += len(index)
        report.skipped_bad += index.record.get("skipped_bad", 0)
        report.bad_examples += index.record.get("bad_examples", [])
    rows = _Rows(sources, spec, stage)
    entries, lengths = _select(sources, spec, stage, report)
    n_train = sum(1 for s, _ in entries if s < len(train_sources))
    n_eval = sum(1 for s, _ in entries if len(train_sources) <= s < len(train_sources) + len(eval_sources))
    train, train_len = entries[:n_train], lengths[:n_train]
    evals, eval_len = entries[n_train:n_train + n_eval], lengths[n_train:n_train + n_eval]
    if not eval_sources and spec.eval_ratio > 0:
        (train, train_len), (evals, eval_len) = _split_eval(train, train_len, spec.eval_ratio, spec.seed)
    train, train_len = _take(train, train_len, spec.train_samples, spec.seed)
    # `added` (self-cognition) joins after the eval split and the draw, as ms-swift adds its identity rows
    train, train_len = train + entries[n_train + n_eval:], np.concatenate([train_len, lengths[n_train + n_eval:]])
    if not train:
        raise DataError("no training samples left after truncation (raise max_length or change truncation_strategy)")
    evals, eval_len = _take(evals, eval_len, spec.eval_samples, spec.seed)
    report.train_samples, report.eval_samples = len(train), len(evals)
    report.train_tokens = int(train_len.sum())
    train_ds = _make(rows, train, train_len, spec, report)
    eval_ds = _make(rows, evals, eval_len, spec, None) if evals else None
    return train_ds, eval_ds, report
