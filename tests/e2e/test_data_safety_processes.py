"""Nothing lost across processes (issue 24): a cpt interrupted by a real SIGINT, a write failure inside a
library, a second data prepare while the first writes."""

import json
import subprocess
import sys

from encoderlab.cli import main
from testkit import cpt_main, interruptible, limited, listing, one_line_error


def test_a_cpt_interrupted_before_its_first_checkpoint_leaves_the_folder_as_it_found_it(qwen3, tmp_path, capsys):
    import signal
    import time

    hf_dir, shards = qwen3
    run = tmp_path / "run"
    run.mkdir()
    (run / "my_notes.txt").write_text("mine\n")
    before = listing(run)
    proc = subprocess.Popen([sys.executable, "-m", "encoderlab.cli", "cpt", str(hf_dir), "--data", str(shards),
                             "--steps", "5000", "--seq-len", "128", "--batch-tokens", "1024", "--output", str(run),
                             "--set", "checkpoint_every=4000", "--set", "log_every=1", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible)
    deadline = time.monotonic() + 120
    while not ((run / "metrics.jsonl").is_file() and (run / "metrics.jsonl").read_text().count("\n") >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)  # training, no checkpoint yet
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0, err
    assert listing(run) == before  # the start, metrics, manifest and lock it wrote are gone
    assert cpt_main(qwen3, run) == 0  # and the fresh command runs

def test_a_write_failure_inside_a_library_is_one_line_and_leaves_nothing_half_written(tiny_checkpoint, tmp_path):
    out = tmp_path / "exported"
    done = limited(f"sys.exit(main(['export', {str(tiny_checkpoint)!r}, {str(out)!r}]))", 64_000)
    lines = [line for line in done.stderr.splitlines() if line.strip() and "Writing model shards" not in line]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("encoderlab: error: "), done.stderr[-3000:]
    assert "File too large" in lines[0] or "too large" in lines[0].lower(), lines[0]
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no half export
    debug = limited(f"sys.exit(main(['--debug', 'export', {str(tiny_checkpoint)!r}, {str(out)!r}]))", 64_000)
    assert "Traceback" in debug.stderr  # --debug shows where it happened

def test_a_second_data_prepare_of_the_same_folder_is_refused_while_the_first_writes(tiny_checkpoint, tmp_path, capsys):
    import time

    out = tmp_path / "shards"
    argv = ["data", "prepare", "toyworld", "--toyworld-documents", "60000", "--tokenizer", str(tiny_checkpoint), "-o",
            str(out), "--no-progress"]
    first = subprocess.Popen([sys.executable, "-m", "encoderlab.cli", *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    lock = tmp_path / ".shards.prepare.lock"
    deadline = time.monotonic() + 120
    while not (lock.is_file() and lock.read_text().startswith("pid ")):
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.05)
    capsys.readouterr()
    assert main(argv) == 2  # was: resumed from the first's staged manifest while the first still wrote it
    one_line_error(capsys, f"{out}: another `encoderlab data prepare` is writing it (pid {first.pid} on host")
    assert first.wait(timeout=600) == 0, first.communicate()
    assert json.loads((out / "manifest.json").read_text())["complete"] and not lock.exists()
    assert main(argv) == 0  # the same settings: the finished folder is reused
