"""`orch data convert|index|mix|preview`: click commands only; the work is in `orchestrator.train.data`.

Everything heavy (numpy, transformers) is imported inside the commands: the bare controller install has no torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from orchestrator.cli.app import TRUST_REMOTE_CODE, cli
from orchestrator.errors import DataError, located
from orchestrator.train.data import DEFAULT_TEMPLATE

ENCODING = click.option("--encoding", default=None, metavar="NAME",
                        help="the input's text encoding when it is not UTF-8 (gb18030, gbk, big5, utf-16, ...); "
                             "a BOM is read without it; output is UTF-8")


def _encoding(name: str | None) -> str | None:
    """The codec of `--encoding` (None when not given); an unknown name is a one-line error."""
    from orchestrator.textio import check_encoding

    return check_encoding(name, "--encoding") if name is not None else None


_TEMPLATE_HELP = ("chat template: auto (the tokenizer's own, else chatml), tokenizer, chatml, qwen, raw (the text "
                  "carries its own markup), fm9g, chatglm3, a .jinja file, or role formats (.yaml/.json file or "
                  "inline JSON)")


def _load_tokenizer(path: Path, trust_remote_code: bool = False):
    """AutoTokenizer from a local folder, failures as a one-line DataError (custom code only when trusted)."""
    from transformers import AutoTokenizer

    from orchestrator.train.remote_code import require_imports, require_trust
    from orchestrator.train.special_tokens import fill_eos_and_pad

    if not path.is_dir():
        raise DataError(located(str(path), None, "tokenizer folder not found"))
    if require_trust(trust_remote_code, tokenizer=path):
        require_imports(path)
    trust = trust_remote_code
    try:
        return fill_eos_and_pad(AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust), path)
    except (OSError, ValueError) as exc:
        raise DataError(located(str(path), None, f"cannot load a tokenizer: {str(exc).splitlines()[0]}")) from None


def _report_skipped(bad) -> None:
    """Tell the user how many bad lines were skipped, with the first few."""
    if bad.count:
        click.echo(f"skipped {bad.count} bad line(s)", err=True)
        for example in bad.examples:
            click.echo(f"  {example}", err=True)


@cli.group()
def data() -> None:
    """Convert, index, mix and preview training data."""


@data.command()
@click.argument("src", type=click.Path(exists=True, path_type=Path))
@click.option("--output", "-o", "out", required=True, type=click.Path(path_type=Path),
              help="a .jsonl file, or a folder (train.jsonl + dev.jsonl) for folders or --split-ratio")
@click.option("--split-ratio", type=float, default=0.0, show_default=True, help="share held out into dev.jsonl")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--skip-bad", is_flag=True, help="count and skip bad lines instead of stopping")
@click.option("--map", "columns", default=None, metavar="OURS=THEIRS,...",
              help="rename the file's fields to ours first, e.g. input=Question,output=Response")
@click.option("--keep-language", type=click.Choice(["zh", "en"]), default=None,
              help="keep records with Chinese characters (zh) or without any (en)")
@ENCODING
def convert(src: Path, out: Path, split_ratio: float, seed: int, skip_bad: bool, columns: str | None,
            keep_language: str | None, encoding: str | None) -> None:
    """Convert .txt, .csv, a JSON list, or a folder of chat exports (*train.json, other *.json, subfolders
    included) into JSONL; preference pairs become {"prompt","chosen","rejected"} lines for stage: dpo."""
    from orchestrator.train.data.convert import convert_file, convert_to_split
    from orchestrator.train.data.entries import DataEntry, Tally, parse_columns

    entry = DataEntry(str(src), parse_columns(columns, "--map") if columns else (), keep_language, _encoding(encoding))
    tally = Tally()
    if src.is_dir() or split_ratio > 0:
        counts, bad = convert_to_split(src, out, split_ratio, seed, skip_bad, entry, tally)
        for name, n in counts.items():
            click.echo(f"{out / name}: {n} samples")
    else:
        if out.suffix != ".jsonl":
            raise DataError(located(str(out), None, "the output of a file conversion must be a .jsonl file"))
        if out.resolve() == src.resolve():
            raise DataError(located(str(out), None, "the output must differ from the input"))
        n, bad = convert_file(src, out, skip_bad, entry, tally)
        click.echo(f"{out}: {n} samples")
    if tally.filtered:
        click.echo(f"left out {tally.filtered} record(s) not in language {keep_language}", err=True)
    _report_skipped(bad)


@data.command()
@click.argument("src", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tokenizer", "tokenizer_dir", required=True, type=click.Path(path_type=Path))
@click.option("--output", "-o", "out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--language", type=click.Choice(["zh", "en"]), default="zh", show_default=True,
              help="recorded in meta.json")
@click.option("--template", default=DEFAULT_TEMPLATE, show_default=True, help=_TEMPLATE_HELP)
@click.option("--workers", type=int, default=None, help="processes (default: all usable cores)")
@click.option("--skip-bad", is_flag=True, help="count and skip bad lines instead of stopping")
@click.option("--json", "as_json", is_flag=True, help="print the build record as JSON")
@ENCODING
@TRUST_REMOTE_CODE
def index(src: Path, tokenizer_dir: Path, out: Path, language: str, template: str, workers: int | None,
          skip_bad: bool, as_json: bool, encoding: str | None, trust_remote_code: bool) -> None:
    """Tokenize SRC into a memory-mapped index with meta.json in --output (cached; built once)."""
    from orchestrator.train.data.templates import parse_template

    spec = parse_template(template, "--template")
    encoding = _encoding(encoding)
    request, record = _index_request(src, out, tokenizer_dir, spec.key, language, skip_bad, trust_remote_code,
                                     encoding)
    if record is None:  # not known to be up to date: load the tokenizer (the slow imports) and build or check
        from orchestrator.train.data.index import build_index

        record = build_index(src, out, _load_tokenizer(tokenizer_dir, trust_remote_code), template=spec,
                             language=language, workers=workers, skip_bad=skip_bad, request=request,
                             encoding=encoding)
    if as_json:
        click.echo(json.dumps(record, ensure_ascii=False))
        return
    state = "up to date (cached)" if record["cached"] else "built"
    click.echo(f"{out}: {state}: {record['samples']} samples, {record['tokens']} tokens, template {record['template']}")
    if record.get("skipped_bad"):
        click.echo(f"skipped {record['skipped_bad']} bad line(s)", err=True)
        for example in record.get("bad_examples", []):
            click.echo(f"  {example}", err=True)


def _index_request(src: Path, out: Path, tokenizer_dir: Path, template_key: str, language: str, skip_bad: bool,
                   trust_remote_code: bool, encoding: str | None) -> tuple[str | None, dict | None]:
    """The key of what `orch data index` was asked (input, tokenizer files, template, settings: no tokenizer
    loaded), and the index's record when it was built for exactly that (an up-to-date index: nothing to import)."""
    from orchestrator.train.data import cache

    if not (src.is_file() and tokenizer_dir.is_dir()):
        return None, None  # the slow path names the problem
    previous = cache.read_record(out)
    request = cache.settings_key(input=cache.input_hash(src, previous), tokenizer_files=cache.tokenizer_files_hash(
        tokenizer_dir), template=template_key, language=language, skip_bad=skip_bad, trust=trust_remote_code,
        **({"encoding": encoding} if encoding else {}))
    if previous and previous.get("request") == request and (out / "meta.json").is_file():
        return request, {**previous, "cached": True}
    return request, None


@data.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--num-samples", type=int, default=None, help="mixture size (default: all lines of all datasets)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object per dataset")
@click.option("--seed", type=int, default=42, show_default=True, help="the seed the transforms are checked with")
@ENCODING
def mix(config: Path, num_samples: int | None, as_json: bool, seed: int, encoding: str | None) -> None:
    """Validate a mixture config (each transform runs on a few samples of its dataset) and print effective shares,
    epochs and token totals per dataset."""
    from orchestrator.train.data.mixture import check_transforms, load_mixture, nlines_warnings, plan_mixture

    entries = load_mixture(config, _encoding(encoding))
    for line in nlines_warnings(config, entries):
        click.echo(f"warning: {line}", err=True)
    check_transforms(entries, seed)
    plans = plan_mixture(entries, num_samples)
    rows = [
        {"dataset_name": p.entry.dataset_name, "task_name": p.entry.task_name, "abs_weight": p.entry.abs_weight,
         "nlines": p.entry.nlines, "samples": p.samples, "share": round(p.share, 4), "epochs": round(p.epochs, 3),
         "tokens": round(p.tokens) if p.tokens is not None else None, "exhausted": p.exhausted}
        for p in plans
    ]
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))
        return
    from rich.text import Text

    from orchestrator.cli.tables import new_table, print_table

    table = new_table("dataset", "task", "abs_weight", "lines", "samples", "share", "epochs", "tokens", keys=2)
    for r in rows:
        note = " (exhausted)" if r["exhausted"] else ""
        table.add_row(Text(r["dataset_name"]), Text(r["task_name"]), f"{r['abs_weight']:g}", str(r["nlines"]),
                      str(r["samples"]), f"{r['share']:.1%}", f"{r['epochs']:.2f}{note}",
                      "?" if r["tokens"] is None else str(r["tokens"]))
    print_table(table)
    total = [r["tokens"] for r in rows]
    summary = "?" if None in total else str(sum(total))
    click.echo(f"total: {sum(r['samples'] for r in rows)} samples, {summary} tokens")


@data.command()
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@click.option("--tokenizer", "tokenizer_dir", required=True, type=click.Path(path_type=Path))
@click.option("--template", default=DEFAULT_TEMPLATE, show_default=True, help=_TEMPLATE_HELP)
@click.option("--max-length", type=int, default=None, help="truncate to this many tokens")
@click.option("--truncation", type=click.Choice(["left", "right"]), default="right", show_default=True)
@click.option("--stage", type=click.Choice(["sft", "pt"]), default="sft", show_default=True)
@click.option("-n", "--num", type=int, default=3, show_default=True, help="how many samples")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per sample: input_ids, labels")
@ENCODING
@TRUST_REMOTE_CODE
def preview(file: Path, tokenizer_dir: Path, template: str, max_length: int | None, truncation: str, stage: str,
            num: int, as_json: bool, encoding: str | None, trust_remote_code: bool) -> None:
    """Show the first samples of FILE as tokens, ids and labels (-100 where no loss)."""
    from orchestrator.train.data.preview import preview_samples

    encoding = _encoding(encoding)
    tokenizer = _load_tokenizer(tokenizer_dir, trust_remote_code)
    from orchestrator.train.data.templates import parse_template

    spec = parse_template(template, "--template")
    for item in preview_samples(file, tokenizer, spec, num, max_length, truncation, stage, encoding):
        if as_json:
            click.echo(json.dumps(item, ensure_ascii=False))
        else:
            _print_sample(item, tokenizer)


def _print_sample(item: dict, tokenizer) -> None:
    """A token / id / label table for one sample."""
    from rich.text import Text

    from orchestrator.cli.tables import new_table, print_table

    table = new_table("#", "token", "id", "label", keys=0,
                      title=f"{item['source']}:{item['line']} (template {item['template']})")
    for i, (tok, label) in enumerate(zip(item["input_ids"], item["labels"])):
        shown = repr(tokenizer.decode([tok]))
        table.add_row(str(i), Text(shown), str(tok), str(label), style=None if label == -100 else "green")
    print_table(table)
