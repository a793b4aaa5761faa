"""ChatGLM3's finetune guide through orch in the envs its users have: transformers 4.40.2 (.venvs/tf440) and
4.44.0 (.venvs/fm9g), both built by scripts/seed_env.sh, on the ChatGLM3-like model of tests/remote_model built
inside that env.

orch runs there as it would once installed into that env: its code from this checkout, and the command-line and
server packages `pip install orchestrator[serve]` adds (click, rich, fastapi, uvicorn, pydantic, ...) linked from
this machine's main stack; transformers, peft, accelerate and torch are the env's own. The flow: `orch train DATA
MODEL lora.yaml yes` with the guide's lora.yaml as written (4.40 knows only `evaluation_strategy`), ptuning_v2.yaml
(the model's own prefix encoder), `orch merge`, `orch chat` and `orch serve` with the openai client, each answer
equal to what ChatGLM3's own chat path gives in that env.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.orch_cli import orch_serve
from tests.test_seed_env import REPO, env_python, seed_run

ENVS = {"4.40.2": Path(os.environ.get("ORCH_TF440_ENV", REPO / ".venvs" / "tf440")),
        "4.44.0": Path(os.environ.get("ORCH_SEED_ENV", REPO / ".venvs" / "fm9g"))}
CLI_PACKAGES = ("click", "rich", "markdown_it", "mdurl", "pygments", "fastapi", "starlette", "pydantic",
                "pydantic_core", "annotated_types", "annotated_doc", "typing_inspection", "anyio", "sniffio",
                "uvicorn", "h11", "opentelemetry")
QUESTION = "北京是中国的首都吗？"
ENV = {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def cli_packages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder linking the packages orch's CLI and server add to an env (this stack's copies)."""
    folder = tmp_path_factory.mktemp("cli-packages")
    for name in CLI_PACKAGES:
        spec = importlib.util.find_spec(name)
        assert spec is not None, f"{name} is not installed in the main stack"
        location = Path(spec.origin).parent if spec.origin else Path(list(spec.submodule_search_locations)[0])
        (folder / name).symlink_to(location)
    return folder


def _answers(python: Path, model: Path, project: Path) -> dict[str, str]:
    """ChatGLM3's own chat path in the env: base + LoRA adapter, and the P-Tuning v2 model."""
    script = f"""
import json
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer
from tests.remote_model import chatglm3_reply
tok = AutoTokenizer.from_pretrained({str(model)!r}, trust_remote_code=True)
base = AutoModelForCausalLM.from_pretrained({str(model)!r}, trust_remote_code=True)
lora = PeftModel.from_pretrained(base, {str(project / 'output')!r}).eval()
tuned = AutoModelForCausalLM.from_pretrained({str(project / 'output_pt')!r}, trust_remote_code=True).eval()
from orchestrator.train.data.prompting import recorded_template, generation_prompt
template = recorded_template([{str(project / 'output')!r}], tok)
same = generation_prompt([{{"role": "user", "content": {QUESTION!r}}}], tok, template) == \
    tok.build_chat_input({QUESTION!r})["input_ids"][0].tolist()  # orch's prompt is ChatGLM3's own
print(json.dumps({{"lora": chatglm3_reply(lora, tok, {QUESTION!r}), "pt": chatglm3_reply(tuned, tok, {QUESTION!r}),
                  "same_prompt": same}}))
"""
    return json.loads(seed_run(python, script).strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("wanted", sorted(ENVS))
def test_chatglm3_guide_flow_in_the_users_env(wanted, cli_packages, tmp_path):
    """Steps that do not need each other's results run side by side (the machine has 2 cores; most of each step is
    one process importing torch and transformers): the LoRA and P-Tuning v2 trainings (the token cache takes a file
    lock), then ChatGLM3's own answers, the three chats and the server."""
    import openai

    python = env_python(ENVS[wanted], f"the transformers {wanted} env")
    model, project = tmp_path / "model", tmp_path / "project"
    built = seed_run(python, f"import transformers, sentencepiece; from tests.remote_model import build_remote_model, "
                             f"write_guide_project; build_remote_model({str(model)!r}); "
                             f"write_guide_project({str(project)!r}); print(transformers.__version__)")
    assert built.strip().splitlines()[-1] == wanted
    env = {**os.environ, **ENV, "PYTHONPATH": f"{REPO}{os.pathsep}{cli_packages}"}

    def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(python), "-m", "orchestrator", *args], cwd=project, env=env, input=stdin,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-4000:]
        return proc

    def lora_then_merge() -> None:
        cli("train", ".", str(model), "lora.yaml", "yes", "--trust-remote-code")
        cli("merge", "--adapter", "output", "--output", "merged", "--trust-remote-code")

    with ThreadPoolExecutor(max_workers=4) as pool:
        trainings = [pool.submit(lora_then_merge), pool.submit(cli, "train", ".", str(model), "ptuning_v2.yaml",
                                                                "--trust-remote-code")]
        for done in trainings:
            done.result()
    assert json.loads((project / "output" / "adapter_config.json").read_text())["target_modules"] == \
        ["query_key_value"]
    state = json.loads((project / "output" / "checkpoint-2" / "trainer_state.json").read_text())
    assert any("eval_rouge-1" in entry for entry in state["log_history"])  # evaluation_strategy + generation
    assert (project / "output" / "predictions_test.jsonl").is_file()  # test_file
    assert json.loads((project / "output_pt" / "config.json").read_text())["pre_seq_len"] == 8
    assert (project / "merged" / "config.json").is_file()

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = pool.submit(_answers, python, model, project)
        chats = {folder: pool.submit(cli, "chat", folder, "--trust-remote-code", "--temperature", "0",
                                     "--max-new-tokens", "6", stdin=QUESTION + "\n")
                 for folder in ("output", "merged", "output_pt")}
        with orch_serve(str(project / "merged"), "--trust-remote-code", "--model-name", "glm", env=env,
                        python=str(python), timeout=120) as (_, url):
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=120)
            reply = client.chat.completions.create(model="glm", messages=[{"role": "user", "content": QUESTION}],
                                                   max_tokens=6, temperature=0)
        expected = answers.result()
        assert expected["same_prompt"], "orch's prompt differs from ChatGLM3's build_chat_input"
        for folder, key in (("output", "lora"), ("merged", "lora"), ("output_pt", "pt")):
            chat = chats[folder].result()
            assert chat.stdout.strip() == expected[key], (folder, chat.stdout, expected)
    assert reply.choices[0].message.content.strip() == expected["lora"]
