"""Fuzzing every reader with Hypothesis (issue 20): valid files mutated (truncated, bytes flipped, binary inserted,
lines and keys duplicated, values of the wrong type, deep nesting, huge numbers, other encodings, empty).

Every outcome is success or an `OrchError` whose message is one line (the CLI prints it as `orch: error: ...`,
exit 2; a few real subprocess runs below prove that end to end), never another exception; a failed conversion
leaves no output; no reader takes more than a few seconds or more than a small multiple of a 100 MB line's size.

Seeded (`derandomize`), `ORCH_FUZZ_EXAMPLES` mutated inputs per reader (default 100: the file stays under a minute);
`ORCH_FUZZ_EXAMPLES=5000` for a long run. The counts tried per reader are printed at the end (`-s`).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.needs import missing

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - the test extra installs it
    missing("hypothesis (pip install -e .[test])")
    raise

from orchestrator.errors import OrchError
from tests.orch_cli import assert_refused, orch
from tests.test_controller_inputs import GOOD as GOOD_INVENTORY

EXAMPLES = int(os.environ.get("ORCH_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large, HealthCheck.large_base_example])
TRIED: Counter = Counter()  # reader -> (mutated inputs tried, refused in one line)
REFUSED: Counter = Counter()

# --- valid seeds -------------------------------------------------------------------------------------------------
INVENTORY = GOOD_INVENTORY.replace('master_port = 29555\n', 'python = "/opt/conda/envs/fm/bin/python"\n'
                                   'master_port = "auto"\nshared_fs = false\n').encode()
CONFIG = """model: model
stage: sft
finetuning: lora
data:
  train: [a.jsonl, {path: b.csv, columns: {input: Question, output: Answer}, encoding: gb18030}]
  template: chatml
  max_length: 256
lora: {r: 8, alpha: 16, dropout: 0.0, target_modules: all-linear}
training_args:
  output_dir: out
  num_train_epochs: 1
  learning_rate: 5.0e-3
  per_device_train_batch_size: 4
""".encode()
CHATGLM3 = b"""data_config:
  train_file: a.jsonl
  val_file: a.jsonl
  num_proc: 1
max_input_length: 128
max_output_length: 64
training_args:
  output_dir: ./output
  max_steps: 3000
  learning_rate: 5e-5
  per_device_train_batch_size: 4
peft_config:
  peft_type: LORA
  task_type: CAUSAL_LM
  r: 8
  lora_alpha: 32
  lora_dropout: 0.1
"""
MIXTURE = json.dumps([
    {"dataset_name": "chat", "task_name": "sft", "abs_weight": 2.0, "path": "a.jsonl", "allow_repeat": True,
     "nlines": 4, "ave_tokens_per_line": 12.5, "total_tokens": 50},
    {"dataset_name": "indexed", "task_name": "pt", "abs_weight": 1, "path": "idx", "allow_repeat": False},
], ensure_ascii=False, indent=1).encode()
META = json.dumps({"language": "zh", "nlines": 2, "nbytes": 60, "length_distribute": {"less_4k": 2, "4k-8k": 0},
                   "avg_token_per_line": 7.5, "data_sample": {"text": "你好"}}, ensure_ascii=False).encode()
DATA = {
    "jsonl": "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in [
        {"text": "纯文本"}, {"input": "问题", "output": "答案"},
        {"instruction": "翻译", "input": "hello", "output": "你好"},
        {"query": "q2", "response": "a2", "history": [["q1", "a1"]], "system": "系统"},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"}]},
        {"prompt": "p", "chosen": "c", "rejected": "r"}]).encode(),
    "json": json.dumps([{"conversations": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                                           {"role": "assistant", "content": "a"}]},
                        {"input": "", "output": "only output"}], ensure_ascii=False, indent=2).encode(),
    "csv": 'instruction,input,output\r\n翻译,你好,"Hello,\nworld"\r\n问,,"答"\r\n'.encode(),
    "txt": "第一行\n\nsecond line\n".encode(),
}
INDEX_SEED = DATA["jsonl"].split(b'{"prompt"')[0]  # supervised samples only (a preference pair is refused there)
PREFERENCE = b'{"prompt": "p", "chosen": "c", "rejected": "r"}\n{"query": "q", "response": "a", ' \
             b'"rejected_response": "b", "history": [["x", "y"]]}\n'


# --- mutations -----------------------------------------------------------------------------------------------------
_SCALAR = re.compile(rb'-?\d+(\.\d+)?([eE][-+]?\d+)?|"[^"\n]*"|\btrue\b|\bfalse\b|\bnull\b')
_PAIR = re.compile(rb'("[^"\n]+"|[A-Za-z_]+)\s*[:=]\s*[^,\n{}\[\]]+')
_WRONG = [b'"text"', b"[]", b"{}", b"null", b"true", b"-1", b"0", b"1e999", b"-1e999", b"NaN", b"9" * 40,
          b"[1, [2, [3]]]", b'{"a": {"b": null}}', b"''", b"~", b"!!python/object:os.system {}", b"*alias"]
_NEST = [b"[", b'{"a": ', b"- ", b"a:\n ", b"[[", b"{a = "]


def _at(data: bytes, frac: float) -> int:
    return min(len(data), int(frac * (len(data) + 1)))


def _apply(data: bytes, op: tuple) -> bytes:
    """One mutation of `data`."""
    kind, *args = op
    if kind == "truncate":
        return data[: _at(data, args[0])]
    if kind == "flip":
        out = bytearray(data)
        for frac, mask in args[0]:
            if out:
                out[min(len(out) - 1, int(frac * len(out)))] ^= mask
        return bytes(out)
    if kind == "insert":
        i = _at(data, args[0])
        return data[:i] + args[1] + data[i:]
    if kind == "dup_line":
        lines = data.splitlines(keepends=True)
        if not lines:
            return data
        i = min(len(lines) - 1, int(args[0] * len(lines)))
        return b"".join(lines[: i + 1] + [lines[i]] + lines[i + 1 :])
    if kind == "dup_key":  # a `key: value` / `"key": value` pair written again right after itself
        pairs = list(_PAIR.finditer(data))
        if not pairs:
            return data
        m = pairs[min(len(pairs) - 1, int(args[0] * len(pairs)))]
        sep = b", " if data[m.start() - 1 : m.start()] in (b"{", b" ", b",") and b'"' in m.group() else b"\n"
        return data[: m.end()] + sep + m.group() + data[m.end() :]
    if kind == "retype":  # a scalar replaced by a value of another type
        found = list(_SCALAR.finditer(data))
        if not found:
            return data
        m = found[min(len(found) - 1, int(args[0] * len(found)))]
        return data[: m.start()] + args[1] + data[m.end() :]
    if kind == "nest":
        i = _at(data, args[0])
        return data[:i] + args[2] * args[1] + data[i:]
    if kind == "huge":
        digits = list(re.finditer(rb"\d+", data))
        if not digits:
            return data
        m = digits[min(len(digits) - 1, int(args[0] * len(digits)))]
        return data[: m.start()] + b"9" * args[1] + data[m.end() :]
    if kind == "empty":
        return b""
    if kind == "binary":
        return args[0]
    if kind == "encode":  # saved by another program
        return data.decode("utf-8", "replace").encode(args[0], "replace")
    if kind == "crlf":
        return data.replace(b"\n", b"\r\n")
    if kind == "bom":
        return b"\xef\xbb\xbf" + data
    raise AssertionError(kind)


_frac = st.floats(0, 1, allow_nan=False)
OPS = st.one_of(
    st.tuples(st.just("truncate"), _frac),
    st.tuples(st.just("flip"), st.lists(st.tuples(_frac, st.integers(1, 255)), min_size=1, max_size=8)),
    st.tuples(st.just("insert"), _frac, st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("insert"), _frac, st.sampled_from([b"\n", b"\x00", b"\xff", b'"', b",", b"]", b"}", b":",
                                                         b"\t", b"\r", b"\xe4\xb8", b"\\", b"#", b"&a ", b"*a"])),
    st.tuples(st.just("dup_line"), _frac),
    st.tuples(st.just("dup_key"), _frac),
    st.tuples(st.just("retype"), _frac, st.sampled_from(_WRONG)),
    st.tuples(st.just("nest"), _frac, st.integers(1, 20000), st.sampled_from(_NEST)),
    st.tuples(st.just("huge"), _frac, st.integers(20, 6000)),
    st.tuples(st.just("empty")),
    st.tuples(st.just("binary"), st.binary(max_size=512)),
    st.tuples(st.just("encode"), st.sampled_from(["gbk", "utf-16-le", "utf-16", "big5", "latin-1", "utf-32"])),
    st.tuples(st.just("crlf")),
    st.tuples(st.just("bom")),
)


def mutated(seed: bytes) -> st.SearchStrategy[bytes]:
    """`seed` after one to three mutations."""
    def apply_all(ops: list) -> bytes:
        data = seed
        for op in ops:
            data = _apply(data, op)
        return data
    return st.lists(OPS, min_size=1, max_size=3).map(apply_all)


def outcome(reader: str, call) -> str:
    """Run one reader: success, or an OrchError in one line. Anything else fails the test (a traceback)."""
    TRIED[reader] += 1
    try:
        call()
    except OrchError as exc:
        message = str(exc)
        assert message.strip() and "\n" not in message and "\r" not in message, f"{reader}: {message!r}"
        REFUSED[reader] += 1
        return "refused"
    return "ok"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A project with the files the seeds name: data, an index folder, a model folder."""
    root = tmp_path_factory.mktemp("fuzz")
    (root / "a.jsonl").write_bytes(INDEX_SEED)
    (root / "b.csv").write_bytes("Question,Answer\r\n问,答\r\n".encode("gb18030"))
    (root / "idx").mkdir()
    (root / "idx" / "data.jsonl").write_bytes(b'{"text": "x"}\n{"text": "y"}\n' * 4)
    (root / "idx" / "meta.json").write_bytes(META)
    (root / "model").mkdir()
    return root


@pytest.fixture(autouse=True, scope="module")
def report():
    yield
    print("\nfuzz: mutated inputs tried (refused in one line) per reader:",
          ", ".join(f"{k} {TRIED[k]} ({REFUSED[k]})" for k in sorted(TRIED)))


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def test_every_seed_is_read(folder, tokenizer, monkeypatch):
    """The unmutated seeds succeed: the fuzz starts from valid files, so what it refuses is what it broke."""
    from orchestrator.cluster.inventory import load_inventory
    from orchestrator.train.config import load_config
    from orchestrator.train.data.convert import convert_file
    from orchestrator.train.data.entries import read_preference
    from orchestrator.train.data.index import build_index
    from orchestrator.train.data.meta import read_meta
    from orchestrator.train.data.mixture import load_mixture, plan_mixture

    monkeypatch.chdir(folder)
    assert load_inventory(str(_write(folder, "seed.toml", INVENTORY))).nodes[1].name == "g3007"
    for seed in (CONFIG, CHATGLM3):
        assert load_config(_write(folder, "seed.yaml", seed), model="model", on_controller=True).data.train
    assert [p.samples for p in plan_mixture(load_mixture(_write(folder, "seed-mix.json", MIXTURE)))] == [5, 2]
    assert read_meta(folder / "idx")["nlines"] == 2
    for suffix, seed in DATA.items():
        assert convert_file(_write(folder, f"seed.{suffix}", seed), folder / "seed-out.jsonl")[0] >= 2
    assert len(read_preference(str(_write(folder, "seed-pref.jsonl", PREFERENCE)), folder)) == 2
    assert build_index(_write(folder, "seed-index.jsonl", INDEX_SEED), folder / "seed-index", tokenizer,
                       workers=1)["samples"] == 5


@FUZZ
@given(data=mutated(INVENTORY))
def test_inventory(folder, data):
    from orchestrator.cluster.inventory import load_inventory

    path = _write(folder, "cluster.toml", data)
    outcome("inventory", lambda: load_inventory(str(path)))


@FUZZ
@given(data=st.one_of(mutated(CONFIG), mutated(CHATGLM3)))
def test_training_config(folder, data, monkeypatch):
    from orchestrator.jobs.inputs import config_paths
    from orchestrator.train.config import load_config

    monkeypatch.chdir(folder)
    path = _write(folder, "train.yaml", data)
    outcome("training config", lambda: load_config(path, model="model", on_controller=True))
    outcome("training config (launch)", lambda: config_paths(path))


@FUZZ
@given(data=mutated(MIXTURE))
def test_mixture_config(folder, data):
    from orchestrator.train.data.mixture import load_mixture, plan_mixture

    path = _write(folder, "mix.json", data)
    outcome("mixture config", lambda: plan_mixture(load_mixture(path), None))


@FUZZ
@given(data=mutated(META))
def test_index_meta_json(folder, data):
    from orchestrator.train.data.meta import read_meta
    from orchestrator.train.data.mixture import load_mixture

    (folder / "idx" / "meta.json").write_bytes(data)
    try:
        outcome("meta.json", lambda: read_meta(folder / "idx"))
        mix = _write(folder, "mix-idx.json", b'[{"dataset_name": "i", "path": "idx", "abs_weight": 1}]')
        outcome("meta.json (mixture)", lambda: load_mixture(mix))
    finally:
        (folder / "idx" / "meta.json").write_bytes(META)


@pytest.mark.parametrize("suffix", sorted(DATA))
def test_data_formats(folder, suffix):
    from orchestrator.train.data.convert import convert_file

    @FUZZ
    @given(data=mutated(DATA[suffix]))
    def run(data):
        src = _write(folder, f"data.{suffix}", data)
        out = folder / f"out-{suffix}.jsonl"
        out.unlink(missing_ok=True)
        if outcome(f"data .{suffix}", lambda: convert_file(src, out)) == "refused":
            assert not out.exists() and not list(folder.glob(f".out-{suffix}.jsonl.tmp-*"))

    run()


@FUZZ
@given(data=mutated(PREFERENCE))
def test_preference_data(folder, data):
    from orchestrator.train.data.entries import read_preference

    _write(folder, "pref.jsonl", data)
    outcome("preference data", lambda: read_preference("pref.jsonl", folder))


@FUZZ
@given(data=mutated(INDEX_SEED))
def test_token_index_build(folder, data, tokenizer):
    """`orch data index` / training's reader: the byte-chunked JSONL path and its UTF-8 check."""
    from orchestrator.train.data.index import build_index

    src = _write(folder, "index-src.jsonl", data)
    out = folder / "index-out"
    record = out / "orch_index.json"
    before = record.read_bytes() if record.is_file() else None
    if outcome("token index", lambda: build_index(src, out, tokenizer, workers=1)) == "refused":
        assert (record.read_bytes() if record.is_file() else None) == before  # the last good index, untouched
    assert not list(folder.glob(".index-out.tmp-*"))


# What long runs (ORCH_FUZZ_EXAMPLES=1500 and 5000) found, each fixed and kept here as a plain case: before the fix
# each one ended in a traceback.
FOUND = [
    ("inventory", INVENTORY.replace(b"gpus = 8", b"gpus = " + b"9" * 4301, 1), "InventoryError"),  # ValueError
    ("config", CONFIG.replace(b"dropout: 0.0", b"dropout: " + b"9" * 932), "ConfigError"),  # OverflowError
    ("config", CONFIG.replace(b"a.jsonl", b"a" + b"[" * 300), "ConfigError"),  # OSError: file name too long
    ("config", CONFIG.replace(b"a.jsonl", b'"a\\0.jsonl"'), "ConfigError"),  # ValueError: embedded null byte
    ("config", CHATGLM3.replace(b"64", b"[]"), "ConfigError"),  # TypeError in int()
    ("config", CHATGLM3.replace(b"64", b"text"), "ConfigError"),  # ValueError in int()
    ("config", CHATGLM3.replace(b"training_args:\n", b"training_args: [a]\nx:\n"), "ConfigError"),  # dict()
    ("config", CONFIG.replace(b"1\n", b"1" * 5000 + b"\n", 1), "ConfigError"),  # a 5000-digit int in YAML
    ("config", CONFIG + b"x: " + b"[" * 20000, "ConfigError"),  # libyaml's parser: SIGSEGV (pure Python: one line)
    ("config", CONFIG.replace(b"a.jsonl", b'"a.\\njsonl"'), "ConfigError"),  # a newline in the path: 2 lines
    ("mixture", MIXTURE.replace(b'"idx"', b'"' + b"i" * 300 + b'"'), "DataError"),  # OSError: name too long
    ("mixture", MIXTURE.replace(b"2.0", b"1e999"), "DataError"),  # an infinite weight
    ("meta", META.replace(b'"nlines": 2', b'"nlines": "2"'), "DataError"),  # int() of a string
    ("meta", META.replace(b'"nlines": 2', b'"nlines": 99999999999999'), "DataError"),  # a list that size
    ("meta", b"{" * 100000, "DataError"),  # RecursionError
]


@pytest.mark.parametrize(("reader", "data", "error"), FOUND, ids=[f"{r}-{i}" for i, (r, _, _) in enumerate(FOUND)])
def test_what_the_long_runs_found_stays_fixed(folder, monkeypatch, reader, data, error):
    from orchestrator.cluster.inventory import load_inventory
    from orchestrator.train.config import load_config
    from orchestrator.train.data.mixture import load_mixture

    monkeypatch.chdir(folder)
    calls = {"inventory": lambda: load_inventory(str(_write(folder, "found.toml", data))),
             "config": lambda: load_config(_write(folder, "found.yaml", data), model="model", on_controller=True),
             "mixture": lambda: load_mixture(_write(folder, "found.json", data))}
    if reader == "meta":
        (folder / "idx2").mkdir(exist_ok=True)
        (folder / "idx2" / "data.jsonl").write_bytes(b'{"text": "x"}\n')
        (folder / "idx2" / "meta.json").write_bytes(data)
        calls["meta"] = lambda: load_mixture(_write(folder, "found.json", b'[{"dataset_name": "i", "path": "idx2", '
                                                                          b'"abs_weight": 1}]'))
    with pytest.raises(OrchError) as err:
        calls[reader]()
    assert type(err.value).__name__ == error and "\n" not in str(err.value), str(err.value)


# --- the command line -------------------------------------------------------------------------------------------
WORDS = ["data.jsonl", "data.csv", "data.txt", "mix.json", "nowhere", "cluster.toml", "train.yaml", "-", "",
         "--", "x=y", "input=", "=a", "0", "-1", "1.5", "1e999", "nan", "zh", "fr", "gb18030", "utf-9", "auto",
         "chatml", "{", '{"user": 1}', "a.jinja", "g3006", "a,b", "sub/dir", "é", "\\", "9" * 30]
OPTIONS = ["--encoding", "--output", "-o", "--split-ratio", "--seed", "--map", "--keep-language", "--skip-bad",
           "--tokenizer", "--template", "--num-samples", "--json", "--workers", "--max-length", "--stage", "-n",
           "--truncation", "--language", "--nodes", "--nproc-per-node", "--dry-run", "--cluster", "--all", "-h"]
COMMANDS = [["data", "convert"], ["data", "index"], ["data", "mix"], ["data", "preview"], ["launch", "--dry-run"],
            ["status"], ["logs"], ["data"], [], ["nosuch"]]


@FUZZ
@given(command=st.sampled_from(COMMANDS),
       words=st.lists(st.one_of(st.sampled_from(WORDS), st.sampled_from(OPTIONS),
                                st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                                        max_size=12)), max_size=6))
def test_command_line_arguments(folder, command, words, monkeypatch):
    """`orch` in process (the same click group and error path as the console script): exit 0 or one line, 2."""
    from orchestrator.cli import cli

    monkeypatch.chdir(folder)
    monkeypatch.setenv("ORCH_HOME", str(folder / "home"))
    monkeypatch.setenv("ORCH_CLUSTER", str(folder / "cluster-ok.toml"))
    (folder / "cluster-ok.toml").write_text('[cluster]\nworkdir = "/tmp/w"\n\n[[nodes]]\nname = "localhost"\n'
                                            'host = "localhost"\n')
    args = command + words
    if command[:1] == ["launch"] and "--" in args:
        args = args[: args.index("--")]  # a command after `--` would run on the localhost node
    err, out = io.StringIO(), io.StringIO()
    TRIED["command line"] += 1
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        cli.main(args, prog_name="orch")
    code = done.value.code or 0
    lines = [line for line in err.getvalue().split("\n") if line.strip()]  # not splitlines(): it splits at \x1e too
    if code != 0:
        REFUSED["command line"] += 1
        others = [line for line in lines if not line.startswith(("warning: ", "note: "))]  # said before the error
        if args in ([], ["data"]) and code == 2 and others and others[0].startswith("Usage: ") \
                and "Traceback" not in err.getvalue():
            return  # a group called with no command (`orch`, `orch data`) shows its help, as click does, exit 2
        assert code == 2 and len(others) == 1 and others[0].startswith("orch: error: "), (args, code, err.getvalue())


# --- end to end, and the 100 MB line ----------------------------------------------------------------------------
def test_hostile_files_through_the_real_command_line(tmp_path):
    """The one-line/exit-2 contract as a user sees it, for one mutated file of each kind."""
    (tmp_path / "binary.jsonl").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "deep.json").write_bytes(b"[" * 200000)
    (tmp_path / "dup.yaml").write_bytes(CONFIG + b"training_args:\n  seed: 1\n")
    (tmp_path / "cut.toml").write_bytes(INVENTORY[:150])
    (tmp_path / "huge.json").write_bytes(MIXTURE.replace(b"2.0", b"9" * 5000))
    assert_refused(orch("data", "convert", "binary.jsonl", "-o", "o.jsonl", cwd=tmp_path), "binary.jsonl:1:")
    assert_refused(orch("data", "convert", "deep.json", "-o", "o.jsonl", cwd=tmp_path), "deep.json:1:", "deeply")
    assert_refused(orch("train", "dup.yaml", cwd=tmp_path), "dup.yaml:14:",
                   "'training_args' is given twice (lines 9 and 14)")
    assert_refused(orch("launch", "--dry-run", "--cluster", "cut.toml", "--", "true", cwd=tmp_path), "cut.toml:")
    assert_refused(orch("data", "mix", "huge.json", cwd=tmp_path), "huge.json")
    assert_refused(orch("data", "convert", "--split-ratio", "x", "binary.jsonl", "-o", "o", cwd=tmp_path),
                   "--split-ratio")
    assert not (tmp_path / "o.jsonl").exists()


BIG_LINE_SCRIPT = r"""
import json, sys, time
from pathlib import Path
from orchestrator.cluster.inventory import load_inventory
from orchestrator.errors import OrchError
from orchestrator.train.config import load_config
from orchestrator.train.data.convert import convert_file
from orchestrator.train.data.meta import read_meta
from orchestrator.train.data.mixture import load_mixture
folder = Path(sys.argv[1])
readers = {".toml": lambda p: load_inventory(str(p)), ".yaml": load_config, ".mix": load_mixture,
           ".meta": lambda p: read_meta(p.parent)}
results = {}
for name in sys.argv[2:]:
    path = folder / name
    if name.endswith(".meta"):
        (folder / "meta.json").unlink(missing_ok=True)
        path.rename(folder / "meta.json")
    if name.endswith(".mix"):
        path = path.rename(path.with_suffix(".json"))
    start = time.monotonic()
    try:
        read = readers.get(Path(name).suffix, lambda p: convert_file(p, folder / (name + ".out.jsonl")))
        read(path)
        result = "ok"
    except OrchError as exc:
        assert "\n" not in str(exc)
        result = "refused"
    (folder / (name + ".out.jsonl")).unlink(missing_ok=True)
    results[name] = [result, round(time.monotonic() - start, 2)]
# VmHWM: this process's own peak (ru_maxrss would carry the forking parent's over exec)
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
results["maxrss_mb"] = int(hwm.split()[1]) // 1024
print(json.dumps(results))
"""


def test_a_100_mb_line_is_read_or_refused_in_seconds_and_bounded_memory(tmp_path):
    """Every reader on one 100 MB line: data (a valid sample, an unterminated one, undecodable bytes at its end, a
    CSV cell, a .txt line, a JSON list), a mixture config, meta.json, and the configs (refused by size)."""
    body = b"a" * (100 << 20)
    files = {"ok.jsonl": b'{"text": "' + body + b'"}\n', "open.jsonl": b'{"text": "' + body + b"\n",
             "bytes.jsonl": b'{"text": "' + body + b'\xff"}\n', "cell.csv": b"text\n" + body + b"\n",
             "line.txt": body + b"\n", "list.json": b'[{"text": "' + body + b'"}]',
             "a.mix": b'[{"dataset_name": "' + body + b'", "path": "line.txt", "abs_weight": 1}]',
             "m.meta": b'{"nlines": 1, "data_sample": "' + body + b'"}',
             "cluster.toml": b'[cluster]\nworkdir = "' + body + b'"\n', "train.yaml": b"model: " + body + b"\n"}
    for name in list(files):
        (tmp_path / name).write_bytes(files.pop(name))
    del body
    names = ["ok.jsonl", "open.jsonl", "bytes.jsonl", "cell.csv", "line.txt", "list.json", "a.mix", "m.meta",
             "cluster.toml", "train.yaml"]
    proc = subprocess.run([sys.executable, "-c", BIG_LINE_SCRIPT, str(tmp_path), *names], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout)
    print("\n100 MB line:", results)
    assert {k: v[0] for k, v in results.items() if k != "maxrss_mb"} == {
        "ok.jsonl": "ok", "open.jsonl": "refused", "bytes.jsonl": "refused", "cell.csv": "refused", "line.txt": "ok",
        "list.json": "ok", "a.mix": "ok", "m.meta": "ok", "cluster.toml": "refused", "train.yaml": "refused"}
    slow = {name: v[1] for name, v in results.items() if name != "maxrss_mb" and v[1] > 20}
    assert not slow, slow  # "a few seconds" idle; generous under a loaded 2-core CI machine
    assert results["maxrss_mb"] < 700, results  # a small multiple of the line (and the interpreter), never unbounded
