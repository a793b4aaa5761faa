"""Benchmark `orch data index` against HF `datasets` `.map(batched=True, num_proc=N)` on the same corpus.

Generates >= 200 MB (default) of mixed Chinese/English chat JSONL with a long-tailed length distribution in a temp
folder, then measures in fresh child processes, with the same tokenizer and the same number of processes:
  ours:     build_index (streaming chunks, forked pool; ids + assistant loss masks)      -> tokens/s, peak RSS
  baseline: datasets.load_dataset("json") + .map(batched=True): the tokenizer's ChatML chat_template rendered to
            text, then `tokenizer(texts)` (ids only: the baseline computes no loss masks) -> tokens/s, peak RSS
The token counts of both must agree (the same text is tokenized).
plus the cached re-run time, peak RSS of ours on a quarter of the corpus (flat memory), and the real-token share of
packed rows vs padded batches. Prints ratios.

Launches: the training data step of a launch (`build_sft_datasets`, in a fresh process each) run three times on
the quarter corpus with one node cache: from job 1's snapshot of the data, from job 2's snapshot (another copy,
another path), and job 2 again (a restart). Reports the share of job 1's tokenization time job 2 saves (>= 90%),
the re-run's time as a share of job 1's (< 2%), each launch's whole process time (imports included), and whether
the cache grew.

    python bench/data_index.py [--mb 200] [--workers N] [--max-length 2048] [--launches-only]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EN = ("the model learns a new task with a small learning rate while the optimizer keeps its state across nodes "
      "and every rank reads its own shard of data before the gradients are averaged").split()
ZH = list("大语言模型在多个节点上训练每个节点有八张显卡机器学习工程师使用命令行启动训练任务今天天气很好适合出门散步北京是中国的首都")


def _text(r: random.Random) -> str:
    """A message with a long-tailed (log-normal) length, Chinese or English."""
    n = min(int(r.lognormvariate(4.0, 1.3)) + 1, 20000)
    if r.random() < 0.5:
        return "".join(r.choices(ZH, k=n))
    return " ".join(r.choices(EN, k=max(1, n // 4)))


def generate(path: Path, megabytes: int, seed: int = 0) -> int:
    """Write chat JSONL until the file reaches `megabytes`; returns the number of lines."""
    r, target, lines = random.Random(seed), megabytes * 1_000_000, 0
    with open(path, "w", encoding="utf-8") as fh:
        while fh.tell() < target:
            messages = [{"role": "system", "content": "You are a helpful assistant. 你是助手。"}] if r.random() < .3 else []
            for _ in range(1 + min(int(r.expovariate(0.7)), 8)):
                messages += [{"role": "user", "content": _text(r)}, {"role": "assistant", "content": _text(r)}]
            fh.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
            lines += 1
    return lines


def _peaks() -> dict:
    """Peak RSS (MiB) of this process and of its largest finished child."""
    return {"peak_rss_main_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_rss_worker_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def child_ours(src: str, out: str, tok: str, workers: int) -> dict:
    """Build the index twice (the second is the cached re-run)."""
    from transformers import AutoTokenizer

    from orchestrator.train.data.index import build_index

    tokenizer = AutoTokenizer.from_pretrained(tok)
    t0 = time.perf_counter()
    record = build_index(src, out, tokenizer, template="chatml", workers=workers)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = build_index(src, out, tokenizer, template="chatml", workers=workers)
    cached = time.perf_counter() - t0
    assert again["cached"] and not record["cached"]
    return {"seconds": first, "cached_seconds": cached, "tokens": record["tokens"], **_peaks()}


def child_baseline(src: str, cache: str, tok: str, workers: int) -> dict:
    """datasets.load_dataset('json') + map(batched=True, num_proc=workers): chat template text, then token ids."""
    import datasets
    from transformers import AutoTokenizer

    datasets.disable_progress_bars()
    tokenizer = AutoTokenizer.from_pretrained(tok)

    def encode(batch: dict) -> dict:
        texts = tokenizer.apply_chat_template(batch["messages"], tokenize=False)
        return {"input_ids": tokenizer(texts, add_special_tokens=False)["input_ids"]}

    t0 = time.perf_counter()
    ds = datasets.load_dataset("json", data_files=src, split="train", cache_dir=cache)
    loaded = time.perf_counter() - t0
    ds = ds.map(encode, batched=True, num_proc=workers, remove_columns=ds.column_names)
    seconds = time.perf_counter() - t0
    tokens = sum(len(x) for b in ds.iter(batch_size=10000) for x in b["input_ids"])
    return {"seconds": seconds, "load_seconds": loaded, "tokens": tokens, **_peaks()}


def child_launch(src: str, cache: str, tok: str, workers: int) -> dict:
    """One launch's data step: the training datasets of a config whose data is `src`, cache in `cache`."""
    t_start = time.perf_counter()
    from transformers import AutoTokenizer

    from orchestrator.train.data.dataset import build_sft_datasets
    from orchestrator.train.data.spec import DataSpec

    tokenizer = AutoTokenizer.from_pretrained(tok)
    t0 = time.perf_counter()
    train, _, _ = build_sft_datasets(DataSpec(train=[src], cache_dir=cache, template="chatml", max_length=2048),
                                     tokenizer)
    return {"seconds": time.perf_counter() - t0, "imports_seconds": t0 - t_start, "samples": len(train)}


def cache_bytes(folder: Path) -> tuple[int, int]:
    """(bytes of token cache entries, bytes of the content-hash memo) under a cache folder."""
    memo = folder / ".hashes"
    entries = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and memo not in p.parents)
    return entries, sum(p.stat().st_size for p in memo.rglob("*") if p.is_file()) if memo.is_dir() else 0


def launches(src: Path, tmp_path: Path, workers: str) -> dict:
    """Job 1, job 2 (another snapshot of the same data) and job 2 again, sharing one node cache."""
    import shutil

    cache, out = tmp_path / "node-cache", {}
    for job in ("job1", "job2"):
        snapshot = tmp_path / job / "data" / src.name
        snapshot.parent.mkdir(parents=True)
        shutil.copyfile(src, snapshot)
    for name, job in (("first", "job1"), ("second", "job2"), ("rerun", "job2")):
        out[name] = _in_child("launch", str(tmp_path / job / "data" / src.name), str(cache), str(tmp_path / "tok"),
                              workers)
        out[name]["cache"] = cache_bytes(cache)
    return out


def report_launches(runs: dict) -> None:
    """Print the launch figures."""
    first, second, rerun = runs["first"], runs["second"], runs["rerun"]
    print(f"launch 1 (job 1's snapshot): data {first['seconds']:.2f} s (+{first['imports_seconds']:.1f} s imports), "
          f"{first['samples']} samples; cache {first['cache'][0] / 1e6:.1f} MB")
    print(f"launch 2 (job 2's snapshot, same config): data {second['seconds']:.3f} s (+{second['imports_seconds']:.1f}"
          f" s imports): saves {1 - second['seconds'] / first['seconds']:.1%} of launch 1's tokenization time")
    print(f"re-run of job 2: data {rerun['seconds']:.3f} s = {rerun['seconds'] / first['seconds']:.2%} of launch 1")
    grew = second["cache"][0] - first["cache"][0], rerun["cache"][0] - first["cache"][0]
    print(f"cache growth after launch 2 / re-run: {grew[0]} / {grew[1]} bytes of token data "
          f"(content-hash memo: {second['cache'][1] - first['cache'][1]} bytes, one line per new data path)")


def _in_child(kind: str, *args: str) -> dict:
    """Run one measurement in a fresh interpreter so peak RSS belongs to it alone."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, __file__, "--child", kind, *args], capture_output=True, text=True,
                          env=env, check=False)
    if proc.returncode:
        sys.exit(f"{kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def shares(index_dir: Path, max_length: int, batch_size: int = 8, seed: int = 0) -> tuple[float, float]:
    """Real-token share of packed rows vs padded batches of shuffled samples (samples over max_length deleted)."""
    import numpy as np

    from orchestrator.train.data.index import TokenIndex
    from orchestrator.train.data.pack import pack_best_fit, padded_share

    lengths = TokenIndex(index_dir).lengths
    lengths = lengths[lengths <= max_length]
    rows = pack_best_fit(lengths, max_length, seed)
    packed = float(lengths.sum()) / (len(rows) * max_length)
    return packed, padded_share(np.random.default_rng(seed).permutation(lengths), batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="corpus size in MB")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--launches-only", action="store_true", help="only the launch measurements")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        fn = {"ours": child_ours, "baseline": child_baseline, "launch": child_launch}[kind]
        print(json.dumps(fn(*rest[:3], int(rest[3]))))
        return
    from orchestrator.train.tiny import build_tokenizer

    with tempfile.TemporaryDirectory(prefix="orch-bench-data-") as tmp:
        tmp_path = Path(tmp)
        build_tokenizer(tmp_path / "tok")
        t0 = time.perf_counter()
        src = tmp_path / "corpus" / "chat.jsonl"
        src.parent.mkdir()
        nlines = generate(src, args.mb)
        quarter = tmp_path / "corpus" / "quarter.jsonl"
        with open(src, "rb") as fin, open(quarter, "wb") as fout:
            fout.writelines(line for i, line in enumerate(fin) if i < nlines // 4)
        print(f"corpus: {src.stat().st_size / 1e6:.0f} MB, {nlines} lines, generated in {time.perf_counter() - t0:.0f}"
              f" s; workers {args.workers}")
        w = str(args.workers)
        runs = launches(quarter, tmp_path, w)
        if args.launches_only:
            report_launches(runs)
            return
        ours = _in_child("ours", str(src), str(tmp_path / "idx"), str(tmp_path / "tok"), w)
        small = _in_child("ours", str(quarter), str(tmp_path / "idx4"), str(tmp_path / "tok"), w)
        base = _in_child("baseline", str(src), str(tmp_path / "hf"), str(tmp_path / "tok"), w)
        packed, padded = shares(tmp_path / "idx", args.max_length)
    assert ours["tokens"] == base["tokens"], (ours["tokens"], base["tokens"])
    tps_ours, tps_base = ours["tokens"] / ours["seconds"], base["tokens"] / base["seconds"]
    print(f"tokens: {ours['tokens']}")
    print(f"ours:     {ours['seconds']:.1f} s  {tps_ours / 1e6:.2f} M tokens/s  peak RSS main "
          f"{ours['peak_rss_main_mib']:.0f} MiB, worker {ours['peak_rss_worker_mib']:.0f} MiB")
    print(f"  quarter corpus: peak RSS main {small['peak_rss_main_mib']:.0f} MiB, worker "
          f"{small['peak_rss_worker_mib']:.0f} MiB (flat memory: same as the full corpus)")
    print(f"baseline: {base['seconds']:.1f} s ({base['load_seconds']:.1f} s load_dataset)  {tps_base / 1e6:.2f} M "
          f"tokens/s  peak RSS main {base['peak_rss_main_mib']:.0f} MiB, worker {base['peak_rss_worker_mib']:.0f} MiB")
    print(f"speed ratio ours/baseline: {tps_ours / tps_base:.2f}x")
    rss = {name: r["peak_rss_main_mib"] + r["peak_rss_worker_mib"] for name, r in (("ours", ours), ("base", base))}
    print(f"peak RSS ratio ours/baseline (main+worker): {rss['ours'] / rss['base']:.2f}")
    print(f"cached re-run: {ours['cached_seconds'] * 1000:.0f} ms = {ours['cached_seconds'] / ours['seconds']:.2%} "
          f"of the first run")
    print(f"real-token share at max_length {args.max_length}: packed {packed:.1%}, padded (batch 8) {padded:.1%}")
    report_launches(runs)


if __name__ == "__main__":
    main()
