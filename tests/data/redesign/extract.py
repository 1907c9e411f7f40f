"""What a study run must reproduce bit for bit across a redesign of the top floors: every fine-tuning
run's scores (by model label, task, LR and seed) and the report's tables (report.md without its
figures and provenance, which hold images, paths, times and machine facts). Used by
tests/test_redesign_parity.py; ``python tests/data/redesign/extract.py STUDY_DIR OUT.json`` wrote the
expected file with the code before the redesign (commit 0d9622b)."""

import json
import re
import sqlite3
import sys
from pathlib import Path


def extract(study_dir: Path) -> dict:
    with sqlite3.connect(study_dir / "results.sqlite") as db:
        rows = db.execute("SELECT model_name, dataset, lr, seed, status, validation_score, test_score, steps "
                          "FROM runs ORDER BY model_name, dataset, lr, seed").fetchall()
    runs = []
    for model, dataset, lr, seed, status, validation, test, steps in rows:
        # the model's label: runs/<run>/checkpoints/step-N, wherever the study lies
        label = re.search(r"runs/([^/]+)/checkpoints/(step-\d+)", model)
        runs.append({"model": "/".join(label.groups()), "dataset": dataset, "lr": lr, "seed": seed, "status": status,
                     "validation": validation.hex() if isinstance(validation, float) else validation,
                     "test": test.hex() if isinstance(test, float) else test, "steps": steps})
    report = (study_dir / "report.md").read_text()
    tables = "\n".join(line for line in report.split("\n## Provenance")[0].splitlines() if "data:image/" not in line)
    return {"runs": runs, "report_tables": tables}


if __name__ == "__main__":
    Path(sys.argv[2]).write_text(json.dumps(extract(Path(sys.argv[1])), indent=1) + "\n")
