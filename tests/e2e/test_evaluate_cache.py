"""encoderlab evaluate end to end: cached runs keyed by every setting and by the data loaded, per-seed
scores, summaries grouped by protocol."""

import math
import sqlite3

from encoderlab.cli import main
from encoderlab.evaluation.finetune import FinetuneConfig
from encoderlab.evaluation.store import ResultsStore, data_fingerprint
from encoderlab.evaluation.sweep import run_sweep
from encoderlab.evaluation.tasks import load_task
from testkit import SMALL, evaluate_cli


def _sst2_folder(path, flip_every: int | None = None):
    """toy-sentiment rows in GLUE SST-2's own file layout (train.tsv, validation.tsv)."""
    task = load_task("toy-sentiment")
    path.mkdir(parents=True)
    for split, name in (("train", "train"), ("test", "validation")):
        rows = task.splits[split][:200]
        lines = ["sentence\tlabel"]
        for i, row in enumerate(rows):
            label = row["label"] if flip_every is None or i % flip_every else 1 - row["label"]
            lines.append(f"{row['sentence']}\t{label}")
        (path / f"{name}.tsv").write_text("\n".join(lines) + "\n")
    return path

# -- 2. cached runs follow the data, the model and every setting ------------------------------------
def test_cached_runs_are_keyed_by_the_data_actually_loaded(tiny_checkpoint, tmp_path, capsys):
    a, b = _sst2_folder(tmp_path / "A"), _sst2_folder(tmp_path / "B", flip_every=3)
    db = tmp_path / "r.sqlite"
    assert evaluate_cli(tiny_checkpoint, db, "--tasks", "sst2", "--data", f"sst2={a}") == 0
    first = capsys.readouterr().out
    assert evaluate_cli(tiny_checkpoint, db, "--tasks", "sst2", "--data", f"sst2={b}") == 0
    second = capsys.readouterr().out
    rows = sqlite3.connect(db).execute("SELECT data_fingerprint, test_score FROM runs").fetchall()
    assert len(rows) == 2 and rows[0][0] != rows[1][0]  # B was run, not served A's result
    assert data_fingerprint(load_task("sst2", local_dir=a)) in first
    assert data_fingerprint(load_task("sst2", local_dir=b)) in second
    assert "1 other run(s)" in second  # A's run stays in the database, outside B's summary
    # the same data again: nothing runs, the same row is served
    assert evaluate_cli(tiny_checkpoint, db, "--tasks", "sst2", "--data", f"sst2={a}") == 0
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 2

def test_cached_runs_are_keyed_by_every_setting(tiny_checkpoint, tmp_path):
    db = tmp_path / "r.sqlite"
    settings = [[], ["--set", "adam_beta2=0.999"], ["--set", "weight_decay=0.0"], ["--set", "query_prefix="],
                ["--set", "warmup_ratio=0.2"]]
    for extra in settings:
        assert evaluate_cli(tiny_checkpoint, db, "--tasks", "toy-sentiment", *extra) == 0
    protocols = sqlite3.connect(db).execute("SELECT protocol_version, protocol FROM runs").fetchall()
    assert len({p for p, _ in protocols}) == len(settings)
    # only a setting declared result-neutral (memory) shares the key
    assert evaluate_cli(tiny_checkpoint, db, "--tasks", "toy-sentiment", "--set", "retrieval_chunk_docs=7") == 0
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM runs").fetchone()[0] == len(settings)

# -- 3. summaries never pool protocols ------------------------------------------------------------
def test_summary_groups_runs_by_protocol(tiny_checkpoint, tmp_path, capsys):
    db = tmp_path / "r.sqlite"
    assert evaluate_cli(tiny_checkpoint, db, "--tasks", "toy-sentiment") == 0
    capsys.readouterr()
    assert main(["evaluate", str(tiny_checkpoint), "--tasks", "toy-sentiment", "--lrs", "1e-3", "--seeds", "0",
                 "--max-steps", "2", "--batch-size", "8", "--max-length", "128", "--max-eval-examples", "24",
                 "--results", str(db), "--no-progress"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| toy-sentiment |"))
    assert row.split("|")[7].strip() == "1"  # one seed: the max-steps-3 run is not pooled in
    assert "1 other run(s)" in out
    rows = run_sweep(str(tiny_checkpoint), ["toy-sentiment"], [1e-3], [0], db,
                     FinetuneConfig(max_steps=2, **SMALL), progress=False)
    assert rows[0]["n"] == 1 and math.isnan(rows[0]["ci_low"])

# -- 10. what is stored is shown -------------------------------------------------------------------
def test_evaluate_prints_per_seed_scores_stability_and_protocol(tiny_checkpoint, tmp_path, capsys):
    db = tmp_path / "r.sqlite"
    assert main(["evaluate", str(tiny_checkpoint), "--tasks", "toy-sentiment", "--lrs", "1e-3,3e-4", "--seeds",
                 "0,1", "--max-steps", "3", "--batch-size", "8", "--max-length", "128", "--max-eval-examples", "24",
                 "--results", str(db), "--no-progress"]) == 0
    out = capsys.readouterr().out
    with ResultsStore(db) as store:
        records = store.records(dataset="toy-sentiment")
    summary_row = next(line for line in out.splitlines() if line.startswith("| toy-sentiment |"))
    chosen = float(summary_row.split("|")[3])
    per_seed = [f"{r.test_score:.2f}" for r in sorted(records, key=lambda r: r.seed) if r.lr == chosen]
    assert ", ".join(per_seed) in summary_row
    assert "| task | LR range (best - worst LR mean) |" in out and "| toy-sentiment |" in out.split("Stability")[1]
    assert "| optimizer | AdamW betas (0.9, 0.95)" in out and "| seeds | 0, 1 |" in out
