"""What the paper's objectives must keep bit for bit when new objective options are added: per-step
losses (float.hex) and a hash of the final weights of short tiny runs of each phase form (CLM, MLM-40,
BERT's 80/10/10 MLM, MNTP, CLM -> MLM-40). ``python tests/data/objectives/extract.py OUT.json`` wrote
``expected.json`` with the code before the options existed (commit in the file), on this machine kind
(x86-64 with AVX-512); ``tests/unit/test_objective_options.py`` compares."""

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from encoderlab.training import PretrainConfig, apply_overrides, pretrain, run_preset

CASES = {
    "clm": ("tiny-clm", []),
    "mlm40": ("tiny-mlm40", []),
    "mlm15-80-10-10": ("tiny-mlm40", ["phases.0.mask_ratio=0.15", "phases.0.mask_fraction=0.8",
                                      "phases.0.random_fraction=0.1", "phases.0.keep_fraction=0.1"]),
    "mntp20": ("tiny-mlm40", ["phases.0.objective=mntp", "phases.0.mask_ratio=0.2"]),
    "clm-mlm40": ("tiny-clm-mlm40", []),
}
STEPS = 12


def run_case(name: str, out: Path) -> dict:
    import torch
    from safetensors.torch import load_file

    preset, overrides = CASES[name]
    base = run_preset(preset).to_dict()
    phases = len(base["phases"])
    steps = [f"phases.{i}.steps={STEPS // phases}" for i in range(phases)]
    config = PretrainConfig.from_dict(apply_overrides(base, [f"output_dir={out / name}", "log_every=1",
                                                             "schedule.warmup_steps=2", "schedule.decay_steps=4",
                                                             *steps, *overrides]))
    torch.set_num_threads(1)
    final = pretrain(config, progress=False)
    losses = [json.loads(line)["loss"].hex() for line in (out / name / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    weights = load_file(str(final / "model.safetensors"))
    digest = hashlib.sha256()
    for key in sorted(weights):
        digest.update(key.encode())
        digest.update(weights[key].float().numpy().tobytes())
    return {"losses": losses, "weights_sha256": digest.hexdigest()}


def main(path: str) -> None:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        cases = {name: run_case(name, Path(tmp)) for name in CASES}
    Path(path).write_text(json.dumps({"commit": commit, "steps": STEPS, "cases": cases}, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
