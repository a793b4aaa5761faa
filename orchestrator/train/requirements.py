"""The node environments the built-in worker supports: one range per package, and which packages a config needs.

The worker runs in the node's own env (`orch launch` ships its code, not its dependencies), so the launch preflight
compares each node's installed versions (package metadata, nothing imported) with these ranges and refuses the
launch naming node, package, version and range. Lower bounds are the oldest releases the worker was run with
(tests/test_seed_env.py runs the FM9G guide's transformers 4.44 / accelerate 0.34 / peft 0.12 stack); see the
README for which were measured. Stdlib only: the controller imports this without torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Supported:
    """A version range `>=minimum` and, when set, `<below`."""

    minimum: str
    below: str | None = None

    def allows(self, found: str) -> bool:
        """Whether version string `found` (e.g. `2.13.0+cpu`) lies in the range."""
        release = parse_version(found)
        return release >= parse_version(self.minimum) and (self.below is None or release < parse_version(self.below))

    def __str__(self) -> str:
        return f">={self.minimum}" + (f",<{self.below}" if self.below else "")


SUPPORTED: dict[str, Supported] = {
    "torch": Supported("2.1"),
    "transformers": Supported("4.40", "6"),
    "tokenizers": Supported("0.19"),
    "accelerate": Supported("0.26"),
    "peft": Supported("0.10"),
    "numpy": Supported("1.21"),
    "pyyaml": Supported("5.4"),
    # only when the config uses them
    "deepspeed": Supported("0.14"),
    "bitsandbytes": Supported("0.43"),
    "trl": Supported("0.20"),
    "tensorboard": Supported("2.10"),
}
CORE = ("torch", "transformers", "tokenizers", "accelerate", "peft", "numpy", "pyyaml")
# transformers before 4.53 refuses bitsandbytes without CUDA ("No GPU found. A GPU is needed for quantization.")
CPU_QLORA_TRANSFORMERS = "4.53"


def parse_version(text: str) -> tuple[int, ...]:
    """The leading numeric release of a version string (`0.12.0.dev0` -> (0, 12, 0); `2.13.0+cpu` -> (2, 13, 0))."""
    match = re.match(r"\d+(?:\.\d+)*", text.strip())
    return tuple(int(part) for part in match.group(0).split(".")) if match else ()


def needed(cfg) -> dict[str, str]:
    """Package -> why the worker needs it for this `TrainConfig` (core packages, then what its keys turn on)."""
    packages = {name: "" for name in CORE}
    if cfg.deepspeed:
        packages["deepspeed"] = "deepspeed"
    if cfg.finetuning == "qlora":
        packages["bitsandbytes"] = "finetuning: qlora"
    if cfg.stage == "dpo":
        packages["trl"] = "stage: dpo"
    report_to = cfg.training_args.get("report_to", "tensorboard")  # the worker's default is TensorBoard
    if "tensorboard" in (report_to if isinstance(report_to, list) else [report_to]):
        packages["tensorboard"] = "report_to: tensorboard"
    return packages


def unmet(versions: dict[str, str | None], packages: dict[str, str], has_gpu: bool = True) -> list[str]:
    """One line per package of `packages` that `versions` (package -> installed version or None) lacks or has
    outside its supported range; plus CPU QLoRA on a transformers that refuses it when `has_gpu` is False."""
    lines = []
    for name, why in packages.items():
        found, supported = versions.get(name), SUPPORTED[name]
        need = f"the worker supports {name} {supported}" + (f", needed for {why}" if why else "")
        if not found:
            lines.append(f"{name} is not installed ({need})")
        elif not supported.allows(found):
            lines.append(f"{name} {found} is not supported ({need})")
    transformers = versions.get("transformers")
    if "bitsandbytes" in packages and not has_gpu and transformers and \
            parse_version(transformers) < parse_version(CPU_QLORA_TRANSFORMERS):
        lines.append(f"finetuning: qlora needs a CUDA GPU with transformers {transformers} (its bitsandbytes "
                     f"integration refuses CPU before {CPU_QLORA_TRANSFORMERS}: \"No GPU found. A GPU is needed for "
                     "quantization.\"); no GPU found on this node")
    return lines


def installed(packages) -> dict[str, str | None]:
    """Package -> installed version (None when missing), from package metadata: nothing is imported."""
    from importlib import metadata

    found: dict[str, str | None] = {}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found
