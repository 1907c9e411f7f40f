"""Do a study's verdicts survive a perturbation of its pretraining? (issue 23: on another CPU the
demo's floats differed and three verdicts flipped.)

Runs the study again, perturbed, then compares each finding's verdict with the original study's
``summary.json``. Two perturbations:

- ``--seed-offset N``: every run's pretraining seed changed (the initial weights, the data order
  and the masks all change: a far larger perturbation than another CPU's float rounding);
- ``--env ATEN_CPU_CAPABILITY=avx2`` (with ``--seed-offset 0``): the same study with torch's AVX2
  kernels instead of AVX-512 ones, i.e. the float rounding of the other CPU of issue 23.

    python benchmarks/verdict_stability.py studies/toyworld-demo --spec toyworld-demo \\
        --json benchmarks/results/demo-2026-12-04/verdict_stability.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from encoderlab.study.spec import load_study  # noqa: E402


def perturbed_spec(spec_name: str, offset: int, where: Path) -> Path:
    """The spec with ``seed=OFFSET`` and ``data.seed=OFFSET`` (the initial weights and masks, and the
    data order; both 0 in the built-in specs) appended to every run's overrides."""
    spec = load_study(spec_name)
    from encoderlab.config import load_yaml
    from encoderlab.study.spec import SPEC_DIR

    source = Path(spec_name) if Path(spec_name).is_file() else SPEC_DIR / f"{spec_name}.yaml"
    raw = load_yaml(source)
    raw["name"] = f"{spec.name}-seed+{offset}"
    for run in raw["runs"]:
        if offset:
            run["overrides"] = [*run.get("overrides", []), f"seed={offset}", f"data.seed={offset}"]
    path = where / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def verdicts(summary: Path) -> dict:
    return {(f["id"], f["a"], f["b"]): f for f in json.loads(summary.read_text())["findings"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("study_dir", help="the finished study to compare with (its summary.json)")
    parser.add_argument("--spec", required=True, help="its spec (file or built-in name)")
    parser.add_argument("--seed-offset", type=int, default=1)
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="environment of the perturbed run, e.g. ATEN_CPU_CAPABILITY=avx2")
    parser.add_argument("--output", help="where the perturbed study runs (default: beside STUDY_DIR)")
    parser.add_argument("--json", help="write the comparison here")
    args = parser.parse_args(argv)
    base = Path(args.study_dir)
    output = Path(args.output) if args.output else base.parent / f"{base.name}-seed+{args.seed_offset}"
    output.mkdir(parents=True, exist_ok=True)
    spec = perturbed_spec(args.spec, args.seed_offset, output)
    started = time.perf_counter()
    import os

    env = dict(os.environ, **dict(item.split("=", 1) for item in args.env))
    subprocess.run([sys.executable, "-m", "encoderlab.cli", "study", "run", str(spec), "--output", str(output),
                    "--no-progress"], check=True, env=env)
    seconds = time.perf_counter() - started
    before, after = verdicts(base / "summary.json"), verdicts(output / "summary.json")
    rows = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        rows.append({"id": key[0], "a": key[1], "b": key[2], "verdict": a and a["verdict"],
                     "perturbed_verdict": b and b["verdict"], "p_holm": a and a["p_holm"],
                     "perturbed_p_holm": b and b["p_holm"], "a_mean": a and a["a_mean"], "b_mean": a and a["b_mean"],
                     "perturbed_a_mean": b and b["a_mean"], "perturbed_b_mean": b and b["b_mean"]})
    changed = [r for r in rows if r["verdict"] != r["perturbed_verdict"]]
    for r in rows:
        mark = "CHANGED" if r in changed else "same   "
        print(f"{mark} {r['id']:<24} {r['a']} vs {r['b']}: {r['verdict']} -> {r['perturbed_verdict']}")
    print(f"{len(changed)} of {len(rows)} verdicts changed (pretraining seed offset {args.seed_offset}, environment "
          f"{args.env or 'unchanged'}; {seconds:.0f} s)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"base": str(base), "perturbed": str(output), "seed_offset":
                                               args.seed_offset, "env": args.env, "changed": len(changed),
                                               "findings": len(rows),
                                               "seconds": seconds, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
