"""Nothing lost, nothing silently wrong (issue 24): each class of defect a careless or hostile user
found, one reproduction each, against the real commands (a real lock holder in another process,
real tiny decoders, real files)."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from encoderlab.cli import main

from testkit import cpt_main, limited, listing, one_line_error


# -- A. Destructive work before the lock ------------------------------------------------------------
def test_overwrite_of_a_live_cpt_run_is_refused_naming_its_holder(qwen3, tmp_path, capsys):
    run = tmp_path / "run"
    assert cpt_main(qwen3, run) == 0
    before = listing(run)
    holder = subprocess.Popen(  # a real process holding the run, as a cpt that trains there does
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from encoderlab.training.lock import RunLock
            RunLock({str(run)!r}).acquire()
            print("held", flush=True)
            time.sleep(120)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        capsys.readouterr()
        assert cpt_main(qwen3, run, "--overwrite") == 2
        one_line_error(capsys, f"{run}: in use by pid {holder.pid}")
        after = listing(run)
        assert {k: v for k, v in after.items() if k != "run.lock"} == {
            k: v for k, v in before.items() if k != "run.lock"}  # nothing of the live run deleted or replaced
    finally:
        holder.kill()
        holder.wait()


def test_overwrite_removes_only_what_the_previous_run_wrote(qwen3, tmp_path, capsys):
    run = tmp_path / "run"
    assert cpt_main(qwen3, run, "--evaluate", "toy-sentiment", "--eval-lrs", "1e-3", "--eval-seeds", "0",
                "--eval-set", "max_steps=2") == 0
    (run / "my_notes.txt").write_text("mine\n")
    results = (run / "results.sqlite").read_bytes()
    old_metrics = (run / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert cpt_main(qwen3, run, "--overwrite", steps="2") == 0
    out = capsys.readouterr().out
    assert "kept my_notes.txt, results.sqlite (not written by the run)" in out, out
    assert (run / "my_notes.txt").read_text() == "mine\n" and (run / "results.sqlite").read_bytes() == results
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step-000002"]  # step 4 is gone
    assert (run / "metrics.jsonl").read_text() != old_metrics
    assert json.loads((run / "outputs.json").read_text())["outputs"] == [
        "init", "cpt.json", "checkpoints", "metrics.jsonl", "config.yaml"]


def test_pretrain_overwrite_keeps_files_it_did_not_write(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["pretrain", "tiny-clm", "phases.0.steps=2", "schedule.warmup_steps=1", "schedule.decay_steps=1",
            "--output", str(run), "--no-progress"]
    assert main(argv) == 0
    (run / "tensorboard-notes.md").write_text("mine\n")
    capsys.readouterr()
    assert main([*argv, "--overwrite"]) == 0
    assert "kept tensorboard-notes.md (not written by the run)" in capsys.readouterr().out
    assert (run / "tensorboard-notes.md").read_text() == "mine\n"


def test_resume_with_nothing_to_resume_leaves_nothing_and_the_fresh_command_then_runs(qwen3, tmp_path, capsys):
    run = tmp_path / "run"
    assert cpt_main(qwen3, run, "--resume") == 2
    one_line_error(capsys, f"cpt --resume: nothing to resume in {run} (no complete checkpoint)")
    assert not run.exists()
    assert cpt_main(qwen3, run) == 0


def test_a_refused_run_leaves_no_parent_folder_it_created(tmp_path, monkeypatch, capsys):
    """`encoderlab pretrain tiny-clm --resume` with nothing to resume, from a fresh folder, once left an
    empty runs/ behind (the lock removed the run folder it made, not the runs/ it made above it)."""
    monkeypatch.chdir(tmp_path)
    assert main(["pretrain", "tiny-clm", "--resume", "--no-progress"]) == 2
    one_line_error(capsys, "runs/tiny-clm: nothing to resume")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "mine.txt").write_text("a user's file\n")
    assert main(["pretrain", "tiny-clm", "output_dir=runs/a/b", "--resume", "--no-progress"]) == 2
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["mine.txt"]  # a/b went, runs/ was not ours


def test_overwrite_never_replaces_a_folder_holding_files_the_output_would_not_have(tiny_checkpoint, tmp_path, capsys):
    """export/import/tokenizer/data prepare --overwrite replace an earlier output, not a user's folder."""
    target = tmp_path / "models"
    assert main(["export", str(tiny_checkpoint), str(target)]) == 0
    assert main(["export", str(tiny_checkpoint), str(target), "--overwrite"]) == 0  # an earlier export: replaced
    (target / "my_notes.txt").write_text("mine\n")
    before = listing(target)
    capsys.readouterr()
    assert main(["export", str(tiny_checkpoint), str(target), "--overwrite"]) == 2
    one_line_error(capsys, f"{target}: holds my_notes.txt, which the output replacing it would not have")
    assert listing(target) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left beside it

    shards = tmp_path / "shards"
    prepare = ["data", "prepare", "toyworld", "--toyworld-documents", "50", "--tokenizer", str(tiny_checkpoint),
               "-o", str(shards), "--no-progress"]
    assert main(prepare) == 0
    (shards / "README.md").write_text("where these came from\n")
    before = listing(shards)
    capsys.readouterr()
    assert main([*prepare, "--overwrite"]) == 2
    one_line_error(capsys, f"{shards}: holds README.md, which the output replacing it would not have")
    assert listing(shards) == before


# -- C. Evaluation data checked for consistency, not only shape ---------------------------------------
from encoderlab.config import ConfigError  # noqa: E402
from encoderlab.evaluation.tasks import load_task  # noqa: E402
from test_task_layouts import MSMARCO_QRELS, beir_folder, squad_json, write_jsonl  # noqa: E402

CONLL_IOB2 = ("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n"
              "call NN I-NP O\n. . O O\n\nPeter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n\n")
CONLL_IOB1 = CONLL_IOB2.replace("B-ORG", "I-ORG").replace("B-MISC", "I-MISC").replace("B-PER", "I-PER")


def _conll_folder(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train.txt", "valid.txt", "test.txt"):
        (folder / name).write_text(text)
    return folder


def test_iob1_conll_is_refused_naming_file_and_line_and_converts_on_request(tmp_path, capsys):
    iob1 = _conll_folder(tmp_path / "iob1", CONLL_IOB1)
    with pytest.raises(ConfigError, match=r"train\.txt:3: tag I-ORG follows the sentence start, which IOB2 does not "
                                          r"allow .*encoderlab data iob1-to-iob2"):
        load_task("conll2003", local_dir=iob1)
    assert main(["data", "iob1-to-iob2", str(iob1), str(tmp_path / "iob2")]) == 0
    assert "train.txt: 2 sentences, 3 tags changed to B-" in capsys.readouterr().out
    converted = load_task("conll2003", local_dir=tmp_path / "iob2")
    assert converted.splits == load_task("conll2003", local_dir=_conll_folder(tmp_path / "gold", CONLL_IOB2)).splits
    assert (tmp_path / "iob2" / "train.txt").read_text() == CONLL_IOB2  # every other byte kept
    assert main(["data", "iob1-to-iob2", str(iob1), str(tmp_path / "iob2")]) == 2  # never over an existing output


def test_iob1_hub_rows_and_uner_files_are_refused(tmp_path):
    rows = [{"id": "0", "tokens": ["Peter", "Blackburn"], "ner_tags": [2, 2]}]  # I-PER I-PER
    for split in ("train", "validation", "test"):
        write_jsonl(tmp_path / "hub" / f"{split}.jsonl", rows)
    with pytest.raises(ConfigError, match=r"train\.jsonl: row 1, token 1 \('Peter'\): tag I-PER follows the sentence"):
        load_task("conll2003", local_dir=tmp_path / "hub")
    uner = tmp_path / "uner"
    uner.mkdir()
    for split in ("train", "validation", "test"):
        (uner / f"{split}.iob2").write_text("# sent_id = a\n1\tPeter\tB-PER\t-\n2\tsaw\tO\t-\n3\tParis\tI-LOC\t-\n\n")
    with pytest.raises(ConfigError, match=r"train\.iob2:4: tag I-LOC follows O"):
        load_task("uner-en", local_dir=uner)


SQUAD_OK = {"answers": [{"answer_start": 20, "text": "Normandy"}], "question": "Where?"}
SQUAD_BAD = {  # case -> (the bad question, the error's words)
    "answer_start past the context": ({"answers": [{"answer_start": 90, "text": "Normandy"}]},
                                      "answer 'Normandy' is not the context's text at answer_start 90"),
    "negative answer_start": ({"answers": [{"answer_start": -3, "text": "Normandy"}]}, "at answer_start -3"),
    "gold text not in the context": ({"answers": [{"answer_start": 20, "text": "Brittany"}]},
                                     "(the text is nowhere in the context)"),
    "an offset one off": ({"answers": [{"answer_start": 21, "text": "Normandy"}]}, "(the text is at 20)"),
    "no answer in SQuAD v1.1": ({"answers": []}, "has no answer, but task 'squad' has no unanswerable questions"),
    "a duplicate question id": ({"id": "t3"}, "1 duplicate question id(s), e.g. 't3'"),
}


@pytest.mark.parametrize("case", list(SQUAD_BAD))
def test_inconsistent_squad_answers_are_refused_at_load(tmp_path, case):
    change, words = SQUAD_BAD[case]
    questions = [{**SQUAD_OK, "question": f"Where {i}?", "id": f"t{i}"} for i in range(40)]
    questions[7] = {**questions[7], **change}
    squad_json(tmp_path / "train-v1.1.json", "1.1", questions)
    squad_json(tmp_path / "dev-v1.1.json", "1.1", [{**SQUAD_OK, "id": "d0"}])
    with pytest.raises(ConfigError) as err:
        load_task("squad", local_dir=tmp_path)
    assert "train-v1.1.json: row 8" in str(err.value) or "duplicate" in str(err.value), err.value
    assert words in str(err.value), err.value


BEIR_BAD = {  # case -> (change to the BEIR folder, the error's words)
    "qrels to documents missing from the corpus": (
        lambda f: (f / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq4\td4\t3\nq5\td99\t2\n"),
        "the test qrels of task 'msmarco' judge 1 document(s) that are not in the corpus"),
    "an empty corpus": (lambda f: (f / "corpus.jsonl").write_text(""), "the corpus of task 'msmarco' is empty"),
    "a test query without a relevant document": (
        lambda f: (f / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq4\td4\t3\nq5\td1\t0\n"),
        "1 query(ies) of the test qrels of task 'msmarco' have no relevant document (score > 0), e.g. 'q5'"),
    "duplicate corpus ids": (
        lambda f: write_jsonl(f / "corpus.jsonl", [{"_id": f"d{i % 6}", "title": "", "text": "x"} for i in range(7)]),
        "1 duplicate corpus id(s), e.g. 'd0'"),
    "duplicate query ids": (
        lambda f: write_jsonl(f / "queries.jsonl", [{"_id": f"q{i % 8}", "text": "x"} for i in range(9)]),
        "1 duplicate query id(s), e.g. 'q0'"),
}


@pytest.mark.parametrize("case", list(BEIR_BAD))
def test_inconsistent_retrieval_data_is_refused_at_load(tmp_path, case):
    change, words = BEIR_BAD[case]
    folder = beir_folder(tmp_path, MSMARCO_QRELS)
    load_task("msmarco", local_dir=folder)  # consistent as written
    change(folder)
    with pytest.raises(ConfigError) as err:
        load_task("msmarco", local_dir=folder)
    assert words in str(err.value) and str(folder) in str(err.value), err.value


# -- D. Identity checked always, not only when the files happen to be there --------------------------
def _copy(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    return target


def test_shards_of_another_tokenizer_are_refused_without_their_tokenizer_folder(qwen3, tmp_path, capsys):
    from test_cpt import _other_tokenizer_shards

    other = _copy(_other_tokenizer_shards(tmp_path, qwen3[0]), tmp_path / "other-bare")
    import shutil

    shutil.rmtree(other / "tokenizer")  # only the manifest's fingerprint says which tokenizer made them
    capsys.readouterr()
    assert cpt_main((qwen3[0], other), tmp_path / "run") == 2
    one_line_error(capsys, "the shards' tokenizer", "is not the decoder's (fingerprint")
    assert not (tmp_path / "run").exists()


def test_a_decoder_without_tokenizer_files_needs_the_users_word(qwen3, tmp_path, capsys):
    hf_dir = _copy(qwen3[0], tmp_path / "bare")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (hf_dir / name).unlink(missing_ok=True)
    capsys.readouterr()
    assert cpt_main((hf_dir, qwen3[1]), tmp_path / "run") == 2
    one_line_error(capsys, "cannot establish that the shards were made with", "--skip-tokenizer-check")
    assert not (tmp_path / "run").exists()
    assert cpt_main((hf_dir, qwen3[1]), tmp_path / "run", "--skip-tokenizer-check") == 0
    assert json.loads((tmp_path / "run" / "cpt.json").read_text())["tokenizer_identity"].startswith("not checked (")


@pytest.mark.parametrize("tokenizer, words", [
    (["a", "list"], "expected a 'tokenizer' mapping"),
    ({"mask_token_id": "5", "fingerprint": "x"}, "records no usable mask token id (got '5')"),
])
def test_a_manifest_with_an_ill_typed_tokenizer_is_one_line(qwen3, tmp_path, capsys, tokenizer, words):
    shards = _copy(qwen3[1], tmp_path / "shards")
    manifest = json.loads((shards / "manifest.json").read_text())
    manifest["tokenizer"] = tokenizer
    (shards / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert cpt_main((qwen3[0], shards), tmp_path / "run") == 2
    one_line_error(capsys, words)


# -- B. No silent defaults, nothing used before it is validated -----------------------------------------
@pytest.mark.parametrize("extra, words", [
    (["--seq-len", "0"], "argument --seq-len: expected a positive integer, got 0"),  # was: 512
    (["--batch-tokens", "0"], "argument --batch-tokens: expected a positive integer, got 0"),  # was: 2,359,296
    (["--mask-ratio", "1e-9"], "mask_ratio 1e-09 selects 1.3e-07 of the 128 tokens of a sequence"),  # was: loss 0
    (["--mask-ratio", "inf"], "argument --mask-ratio: expected a finite number in (0, 1), got inf"),  # OverflowError
    (["--mask-ratio", "nan"], "argument --mask-ratio: expected a finite number in (0, 1), got nan"),
    (["--eval-lrs", "nan", "--evaluate", "toy-sentiment"], "cpt --eval-lrs: expected a finite number in (0, inf)"),
    (["--eval-seeds", "0,0", "--evaluate", "toy-sentiment"], "cpt --eval-seeds: 0 is listed twice"),
    (["--steps", "1"], None),  # was: blamed a warmup the user never set
])
def test_cpt_numbers_are_checked_before_anything_is_written(qwen3, tmp_path, capsys, extra, words):
    run = tmp_path / "run"
    capsys.readouterr()
    if words is None:
        assert cpt_main(qwen3, run, *extra, steps="1") == 0, capsys.readouterr().err
        return
    assert cpt_main(qwen3, run, *extra) == 2
    one_line_error(capsys, words)
    assert not run.exists()


def test_a_full_disk_in_data_prepare_names_the_output(tiny_checkpoint, tmp_path):
    out = tmp_path / "shards"
    done = limited(f"sys.exit(main(['data', 'prepare', 'toyworld', '--toyworld-documents', '3000', '--tokenizer', "
                    f"{str(tiny_checkpoint)!r}, '-o', {str(out)!r}, '--no-progress']))", 40_000)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert lines[-1].startswith("encoderlab: error: ") and str(out) in lines[-1], lines[-1]
    assert not out.exists()


# -- E. Dry runs check what runs check ------------------------------------------------------------------
STUDY = {"name": "s", "runs": [{"name": "parent", "preset": "tiny-clm"},
                               {"name": "child", "preset": "tiny-clm",
                                "init": {"run": "parent", "step": 6}}],
         "evaluation": {"tasks": ["toy-sentiment"], "lrs": [1e-3], "seeds": [0]}}


def _study(tmp_path, change) -> Path:
    import copy

    import yaml

    spec = copy.deepcopy(STUDY)
    change(spec)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _set(*keys, value):
    def change(spec):
        node = spec
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return change


STUDY_BAD = {  # case -> (change, the error's words)
    "a run that starts from itself": (
        _set("runs", 1, "init", value={"run": "child", "step": 6}),
        "a run cannot start from itself"),
    "a run that starts from a run the study lacks": (
        _set("runs", 1, "init", value={"run": "ghost", "step": 6}),
        "from run 'ghost' step 6: the study has no such run"),
    "a child listed before its parent": (lambda spec: spec["runs"].reverse(), "listed after it; list 'parent' first"),
    "a cycle": (lambda spec: spec["runs"][0].update(
        init={"run": "child", "step": 6}), "listed after it"),
    "a NaN learning rate": (_set("evaluation", "lrs", value=[float("nan")]), "expected a finite number in (0, inf)"),
    "a negative learning rate": (_set("evaluation", "lrs", value=[-1e-3]), "expected a finite number in (0, inf)"),
    "no tasks": (_set("evaluation", "tasks", value=[]), "evaluation.tasks: expected at least one value"),
    "no seeds": (_set("evaluation", "seeds", value=[]), "evaluation.seeds: expected at least one value"),
    "a repeated seed": (_set("evaluation", "seeds", value=[0, 1, 0]), "evaluation.seeds: 0 is listed twice"),
    "no toyworld documents": (_set("data", value={"toyworld_documents": 0}),
                              "data.toyworld_documents: expected a positive integer, got 0"),
    "a run compared with itself": (_set("comparisons", value=[["parent", "parent"]]), "two different runs"),
    "repeated evaluate_steps": (_set("runs", 0, "evaluate_steps", value=[2, 2]), "evaluate_steps: 2 is listed twice"),
    "a study name outside studies/": (_set("name", value="../escape"), "'../escape' is not a safe name"),
    "a run name outside runs/": (_set("runs", 0, "name", value="../../escape"), "'../../escape' is not a safe name"),
}


@pytest.mark.parametrize("case", list(STUDY_BAD))
def test_study_dry_runs_refuse_what_the_run_would(tmp_path, capsys, case):
    change, words = STUDY_BAD[case]
    ok = _study(tmp_path, lambda spec: None)
    assert main(["study", "run", str(ok), "--dry-run", "--output", str(tmp_path / "out")]) == 0  # the unchanged spec
    capsys.readouterr()
    path = _study(tmp_path, change)
    assert main(["study", "run", str(path), "--dry-run", "--output", str(tmp_path / "out")]) == 2
    one_line_error(capsys, words)
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape").exists()


def test_a_study_cpt_run_needs_shards_of_its_decoders_tokenizer(qwen3, tmp_path, capsys):
    spec = {"name": "s", "data": {"source": "toyworld", "toyworld_documents": 400},
            "runs": [{"name": "cpt", "cpt": {"decoder": str(qwen3[0]), "steps": 4}}],
            "evaluation": {"tasks": ["toy-sentiment"], "lrs": [1e-3], "seeds": [0]}}
    import yaml

    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    capsys.readouterr()
    assert main(["study", "run", str(tmp_path / "s.yaml"), "--dry-run", "--output", str(tmp_path / "out")]) == 2
    one_line_error(capsys, "the study's shards would be made with a tokenizer trained on the corpus")


def test_a_study_refuses_bad_evaluation_data_before_pretraining(tmp_path, capsys):
    folder = _conll_folder(tmp_path / "conll", CONLL_IOB1)
    spec = {"name": "s", "runs": [{"name": "clm", "preset": "tiny-clm"}],
            "evaluation": {"tasks": ["conll2003"], "lrs": [1e-3], "seeds": [0], "data": {"conll2003": str(folder)}}}
    import yaml

    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    capsys.readouterr()
    assert main(["study", "run", str(tmp_path / "s.yaml"), "--output", str(tmp_path / "out"), "--no-progress"]) == 2
    one_line_error(capsys, "train.txt:3: tag I-ORG follows the sentence start")
    assert not (tmp_path / "out" / "runs").exists()  # nothing pretrained


# -- F. YAML and names -----------------------------------------------------------------------------------
def test_duplicate_yaml_keys_are_refused(tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_text("name: s\nruns:\n  - {name: clm, preset: tiny-clm}\nevaluation:\n  tasks: [toy-sentiment]\n"
                    "  lrs: [0.001]\n  seeds: [0]\n  lrs: [0.002]\n")
    assert main(["study", "run", str(path), "--dry-run", "--output", str(tmp_path / "out")]) == 2
    one_line_error(capsys, "key 'lrs' appears twice in one mapping (lines 6 and 8)")
    run = tmp_path / "run.yaml"
    import yaml

    from encoderlab.training import run_preset

    text = yaml.safe_dump(run_preset("tiny-clm").to_dict(), sort_keys=False)
    run.write_text(text + "schedule: {lr: 0.1, warmup_steps: 1, decay_steps: 1, final_lr: 0.0}\n")
    assert main(["pretrain", str(run), "--output", str(tmp_path / "r")]) == 2
    one_line_error(capsys, "key 'schedule' appears twice")
    assert not (tmp_path / "r").exists()


# -- G. Messages that name the input ---------------------------------------------------------------------
def test_messages_name_the_input(qwen3, tmp_path, capsys):
    shards = _copy(qwen3[1], tmp_path / "shards")
    (shards / "manifest.json").write_text('{"tokenizer": ')  # corrupt
    assert cpt_main((qwen3[0], shards), tmp_path / "run") == 2
    one_line_error(capsys, f"{shards / 'manifest.json'}: not a readable shard manifest")
    assert main(["model", "info", str(qwen3[0])]) == 0  # a Hugging Face directory: its config
    assert "2 layers, hidden 64" in capsys.readouterr().out
    assert main(["model", "info", str(tmp_path / "nothing")]) == 2
    one_line_error(capsys, f"{tmp_path / 'nothing'}: no such file or directory")
    assert main(["pretrain", "tiny-clm", "name=", "--output", str(tmp_path / "r")]) == 2
    one_line_error(capsys, "override 'name=': no value after '='")
    if Path("/proc").is_dir():  # a read-only location (root may write anywhere a permission bit forbids)
        from encoderlab.evaluation.store import ResultsStore

        with pytest.raises(OSError, match=r"/proc/encoderlab-results.sqlite: cannot write the results database here "
                                          r".* /proc must be a writable folder"):
            ResultsStore("/proc/encoderlab-results.sqlite")


def test_a_checkpoint_whose_tokenizer_files_were_swapped_is_refused_at_evaluation(qwen3, tiny_checkpoint, tmp_path,
                                                                                  capsys):
    import shutil

    run = tmp_path / "run"
    assert cpt_main(qwen3, run) == 0
    checkpoint = run / "checkpoints" / "step-000004"
    recorded = json.loads((checkpoint / "config.json").read_text())["tokenizer"]
    assert recorded["fingerprint"] == json.loads((qwen3[1] / "manifest.json").read_text())["tokenizer"]["fingerprint"]
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy2(tiny_checkpoint / name, checkpoint / name)  # another tokenizer's files
    capsys.readouterr()
    assert main(["evaluate", str(checkpoint), "--tasks", "toy-sentiment", "--lrs", "1e-3", "--seeds", "0",
                 "--max-steps", "2", "--results", str(tmp_path / "r.sqlite"), "--no-progress"]) == 2
    one_line_error(capsys, f"{checkpoint}: its tokenizer files (fingerprint", "are not the tokenizer the model was "
                    f"trained with ({recorded['name']!r}, fingerprint {recorded['fingerprint']})")
    assert not (tmp_path / "r.sqlite").exists()


@pytest.mark.parametrize("extra, words", [
    (["--data", "sst2=a", "--data", "sst2=b", "--tasks", "sst2"], "task 'sst2' is given twice (a and b)"),
    (["--set", "adam_beta2=0.99", "--set", "adam_beta2=0.999"], "adam_beta2 is set twice"),
    (["--max-steps", "5", "--set", "max_steps=6"], "max_steps is set twice"),
    (["--tasks", "toy-sentiment,toy-sentiment"], "evaluate --tasks: 'toy-sentiment' is listed twice"),
    (["--seeds", "0,1,0"], "evaluate --seeds: 0 is listed twice"),
])
def test_evaluate_refuses_a_setting_given_twice(tiny_checkpoint, tmp_path, capsys, extra, words):
    capsys.readouterr()
    assert main(["evaluate", str(tiny_checkpoint), "--results", str(tmp_path / "r.sqlite"), "--no-progress",
                 *extra]) == 2
    one_line_error(capsys, words)
    assert not (tmp_path / "r.sqlite").exists()
