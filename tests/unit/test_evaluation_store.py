import math
import sqlite3

import pytest

from encoderlab.evaluation.store import ResultsStore, RunRecord, model_fingerprint, run_key


def record(seed=0, lr=1e-4, status="ok", validation=0.8, test=0.75):
    return RunRecord(model_fingerprint="abc", model_name="tiny", dataset="toy-sentiment", lr=lr, seed=seed,
                     protocol_version="1", data_fingerprint="d0", status=status, validation_score=validation, test_score=test,
                     metrics={"accuracy": test}, test_items=[1.0, 0.0, 1.0], steps=10, train_seconds=1.5,
                     eval_seconds=0.2, provenance={"encoderlab": "0.1.0"})


def test_runs_are_stored_once_and_survive_reopening(tmp_path):
    path = tmp_path / "results.sqlite"
    with ResultsStore(path) as store:
        assert store.add(record(seed=0)) and store.add(record(seed=1))
        assert not store.add(record(seed=0))  # the same run again: ignored, no duplicate row
        assert store.add(record(seed=2, status="diverged", validation=math.nan, test=math.nan))
        assert store.count() == 3 and store.has(record(seed=1).key)
    with ResultsStore(path) as store:  # a new process would see the same
        rows = store.records(model_fingerprint="abc", dataset="toy-sentiment")
        assert [r.seed for r in rows] == [0, 1, 2]
        assert rows[0].metrics == {"accuracy": 0.75} and rows[0].test_items == [1.0, 0.0, 1.0]
        assert rows[2].status == "diverged" and math.isnan(rows[2].test_score)
    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 3


def test_run_identity_and_bad_input(tmp_path):
    assert run_key("m", "d", 1e-4, 0, "1", "x") == run_key("m", "d", 0.0001, 0, "1", "x") != run_key("m", "d", 1e-4, 1,
                                                                                                 "1", "x")
    assert run_key("m", "d", 1e-4, 0, "1", "x") != run_key("m", "d", 1e-4, 0, "1", "y")  # other data
    with ResultsStore(tmp_path / "r.sqlite") as store, pytest.raises(ValueError, match="run status"):
        store.add(record(status="crashed"))
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(ValueError, match="not a usable encoderlab results database"):
        ResultsStore(tmp_path / "junk.sqlite")


def test_model_fingerprint_follows_the_weights(tmp_path, tiny_model):
    from encoderlab.model import save_checkpoint

    a = save_checkpoint(tiny_model, tmp_path / "a")
    b = save_checkpoint(tiny_model, tmp_path / "b")
    assert model_fingerprint(a) == model_fingerprint(b)
    with pytest.raises(ValueError, match="no safetensors"):
        model_fingerprint(tmp_path)


def test_a_full_database_is_an_error_that_names_it_and_keeps_what_was_there(tmp_path):
    path = tmp_path / "r.sqlite"
    with ResultsStore(path) as store:
        assert store.add(record(seed=0))
        pages = store._connection.execute("PRAGMA page_count").fetchone()[0]
        store._connection.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own 'database or disk is full'
        big = record(seed=1)
        big.test_items = [0.5] * 200_000
        with pytest.raises(OSError, match=r"r.sqlite: could not record the run of toy-sentiment .*full"):
            store.add(big)
        assert store.count() == 1 and not store.has(big.key)
