"""`encoderlab cpt` end to end on CPU: tiny random Qwen3, Gemma 3 (text) and Llama decoders saved by
transformers, shards made with their tokenizer, continued MLM pretraining with every shape inferred
(no model overrides); evaluation and export of the final checkpoint; two processes under torchrun;
bad decoders and options refused with one line (exit code 2) before anything is written."""

import json
from pathlib import Path

import pytest
import torch
import transformers

from encoderlab.cli import main
from encoderlab.model import load_checkpoint
from encoderlab.training.cpt import cpt_schedule
from testkit import one_line_error, prepare_shards, records, tiny_decoder


def test_cpt_from_a_tiny_qwen3_end_to_end(tmp_path, capsys):
    tokens = tiny_decoder(tmp_path / "qwen3")
    shards, out = tmp_path / "shards", tmp_path / "run"
    assert main(["data", "prepare", "toyworld", "--toyworld-documents", "400", "--tokenizer", str(tmp_path / "qwen3"),
                 "-o", str(shards), "--no-progress"]) == 0
    assert main(["cpt", str(tmp_path / "qwen3"), "--data", str(shards), "--steps", "40", "--seq-len", "128",
                 "--batch-tokens", "1024", "--output", str(out), "--no-progress"]) == 0
    record = json.loads((out / "cpt.json").read_text())
    assert record["model_type"] == "qwen3" and record["objective"] == "mlm" and record["mask_ratio"] == 0.4
    identity = record["tokenizer_identity"]
    assert identity.startswith("fingerprint ") and "the decoder's tokenizer" in identity, identity
    assert record["mask"] == {"mask_token_id": tokens, "mask_token": "<mask>", "origin": "added",
                              "decoder_vocab_size": 320}  # a free id of the embedding: nothing grown
    assert record["schedule"] == {**cpt_schedule(40), "final_lr": 0.0}
    assert record["schedule"]["lr"] == 5e-4
    losses = [r["loss"] for r in records(out)]
    assert len(losses) >= 4 and sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 0.3, losses
    final = load_checkpoint(out / "checkpoints" / "step-000040")
    config = final.config
    assert (config.qk_norm, config.head_dim, config.vocab_size, config.mask_token_id) == ("head", 16, 320, tokens)
    assert (out / "checkpoints" / "step-000040" / "tokenizer.json").is_file()  # the tokenizer came along
    assert "final checkpoint" in capsys.readouterr().out
    # the same command again: refused (continue with --resume or replace with --overwrite), nothing touched
    before = (out / "metrics.jsonl").read_text()
    assert main(["cpt", str(tmp_path / "qwen3"), "--data", str(shards), "--steps", "40", "--seq-len", "128",
                 "--batch-tokens", "1024", "--output", str(out), "--no-progress"]) == 2
    assert "already holds a cpt run; continue it with --resume" in capsys.readouterr().err
    assert (out / "metrics.jsonl").read_text() == before


def _config_edit(key, value):
    def edit(config):
        config[key] = value
    return edit


def _relabel_as_llama(config):  # a Qwen3 relabelled: its q/k norms were not announced
    config["model_type"] = "llama"


def _more_tensors(directory):  # an o_proj bias that no Qwen3 config announces
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(directory / "model.safetensors"))
    tensors["model.layers.0.self_attn.o_proj.bias"] = torch.zeros(64)
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})


BAD_DECODERS = {  # case -> (change to the decoder's config.json or files, the error's words)
    "unsupported architecture": (_config_edit("model_type", "phi3"),
                                 ("architecture 'phi3' is not supported; expected one of ('eurobert', 'llama', "
                                 "'mistral', 'qwen2', 'qwen3', 'gemma2', 'gemma3_text', 'olmo2')")),
    "unknown rope scaling": (_config_edit("rope_parameters", {"rope_type": "warp-drive", "rope_theta": 1e6}),
                             "rope_type 'warp-drive' is unknown to transformers; known: "),
    "weights do not match the config": (_config_edit("intermediate_size", 96),
                                        "mlp.gate_up.weight' has shape (256, 64), expected (192, 64)"),
    "layers missing from the weights": (_config_edit("num_hidden_layers", 3),
                                        "tensor 'model.layers.2.self_attn.q_proj.weight' is missing"),
    "norms the config did not announce": (_relabel_as_llama, ("unexpected tensors for this architecture: "
                                          "['model.layers.0.self_attn.k_norm.weight'")),
    "a bias the config did not announce": (None, ("unexpected tensors for this architecture: "
                                           "['model.layers.0.self_attn.o_proj.bias']")),
}


@pytest.mark.parametrize("case", list(BAD_DECODERS))
def test_bad_decoders_are_one_line_errors_before_anything_is_written(qwen3, tmp_path, capsys, case):
    import shutil

    decoder, shards = qwen3
    change, words = BAD_DECODERS[case]
    shutil.copytree(decoder, tmp_path / "decoder")
    if change is None:
        _more_tensors(tmp_path / "decoder")
    else:
        config = json.loads((tmp_path / "decoder" / "config.json").read_text())
        change(config)
        (tmp_path / "decoder" / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert main(["cpt", str(tmp_path / "decoder"), "--data", str(shards), "--output", str(tmp_path / "run"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("encoderlab: error: ") and words in err, err
    assert not (tmp_path / "run").exists()


def _other_tokenizer_shards(tmp_path, decoder):
    """Shards of the same corpus made with a tokenizer trained here (other ids than the decoder's)."""
    assert main(["data", "prepare", "toyworld", "--toyworld-documents", "400", "--train-tokenizer", "300", "-o",
                 str(tmp_path / "other"), "--no-progress"]) == 0
    return tmp_path / "other"


BAD_OPTIONS = {  # case -> (extra arguments, or a function of tmp_path giving them; the error's words)
    "no shards": (lambda tmp, decoder: ["--data", str(tmp / "nothing")], "no manifest.json"),
    "shards of another tokenizer": (lambda tmp, decoder: ["--data", str(_other_tokenizer_shards(tmp, decoder))],
                                    "the shards' tokenizer is not the decoder's"),
    "a mask ratio out of (0, 1)": (["--mask-ratio", "1.5"], "argument --mask-ratio: expected a finite number in (0, 1), got 1.5"),
    "no steps": (["--steps", "0"], "argument --steps: expected a positive integer, got 0"),
    "a sequence past the decoder's positions": (["--seq-len", "1024"], "data.seq_len 1024 exceeds the model's"),
    "an unknown override": (["--set", "schedule.lrr=1"], "unknown key 'schedule.lrr'; valid here: decay_steps"),
    "an unknown task": (["--evaluate", "toy-sentiment,sst3"], "unknown task 'sst3'"),
    "a bad protocol setting": (["--evaluate", "toyworld", "--eval-set", "max_steps=0"],
                               "max_steps must be a positive integer, got 0"),
    "bad seeds": (["--evaluate", "toyworld", "--eval-seeds", "0,one"], "cpt --eval-seeds '0,one': expected comma-separated integers"),
    "an export no transformers class runs": (lambda tmp, decoder: ["--export", str(tmp / "exported")],
                                             "cpt --export: "),
    "resume and overwrite": (["--resume", "--overwrite"], "--resume and --overwrite are exclusive"),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_bad_options_are_one_line_errors_before_anything_is_written(qwen3, tmp_path, capsys, case):
    decoder, shards = qwen3
    extra, words = BAD_OPTIONS[case]
    extra = extra(tmp_path, decoder) if callable(extra) else extra
    capsys.readouterr()
    argv = ["cpt", str(decoder), "--data", str(shards), "--output", str(tmp_path / "run"), "--no-progress",
            "--seq-len", "128", "--batch-tokens", "1024", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("encoderlab: error: ") and words in err, err
    assert not (tmp_path / "run").exists() and not (tmp_path / "exported").exists()
    if case == "an export no transformers class runs":
        assert "q/k" in err or "qk_norm" in err, err  # names what EuroBERT cannot represent
    assert main(["cpt", str(decoder), "--data", "x", "--objective", "clm"]) == 2


def test_cpt_grows_a_full_embedding_by_one_row_for_the_mask(tmp_path):
    """A decoder whose tokenizer fills its embedding has no free id: `data prepare` adds <mask> at
    id vocab_size, and cpt grows the embedding and head by that row (the mean embedding), recorded."""
    tokens = tiny_decoder(tmp_path / "full", vocab=280)
    assert tokens == 280  # every row of the embedding is a token
    prepare_shards(tmp_path / "full", tmp_path / "shards")
    assert main(["cpt", str(tmp_path / "full"), "--data", str(tmp_path / "shards"), "--steps", "2", "--seq-len",
                 "128", "--batch-tokens", "1024", "--output", str(tmp_path / "run"), "--no-progress"]) == 0
    mask = json.loads((tmp_path / "run" / "cpt.json").read_text())["mask"]
    assert mask == {"mask_token_id": 280, "mask_token": "<mask>", "origin": "added", "decoder_vocab_size": 280,
                    "grown_to": 281}
    model = load_checkpoint(tmp_path / "run" / "init")
    assert model.config.vocab_size == 281
    for rows in (model.embed.weight.detach(), model.lm_head.weight.detach()):
        torch.testing.assert_close(rows[280], rows[:280].mean(0))
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "step-000002").config.vocab_size == 281


def test_cpt_evaluates_and_exports_the_final_checkpoint(tmp_path, capsys):
    tiny_decoder(tmp_path / "llama", family="llama")
    prepare_shards(tmp_path / "llama", tmp_path / "shards")
    out, exported = tmp_path / "run", tmp_path / "exported"
    assert main(["cpt", str(tmp_path / "llama"), "--data", str(tmp_path / "shards"), "--steps", "4", "--seq-len",
                 "128", "--batch-tokens", "1024", "--output", str(out), "--no-progress",
                 "--evaluate", "toy-sentiment", "--eval-lrs", "1e-3", "--eval-seeds", "0,1", "--eval-set",
                 "max_steps=2", "--eval-set", "max_eval_examples=8", "--eval-set", "max_length=64",
                 "--export", str(exported)]) == 0
    printed = capsys.readouterr().out
    assert "| toy-sentiment |" in printed and f"results: {out / 'results.sqlite'}" in printed
    import sqlite3

    rows = sqlite3.connect(out / "results.sqlite").execute("SELECT model_name, dataset, seed FROM runs").fetchall()
    final = out / "checkpoints" / "step-000004"
    assert sorted(rows) == [(str(final), "toy-sentiment", 0), (str(final), "toy-sentiment", 1)]
    # the export is transformers' EuroBERT with the final weights and the decoder's tokenizer
    hf = transformers.AutoModelForMaskedLM.from_pretrained(exported).eval()
    ours = load_checkpoint(final).eval()
    ids = transformers.AutoTokenizer.from_pretrained(exported)("Alice lives in Paris.", return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(hf(input_ids=ids).logits,
                                   ours(ids, attention="bidirectional", logits_at="all").logits, atol=1e-4, rtol=1e-4)


def test_cpt_from_a_tiny_gemma3_end_to_end(tmp_path):
    tokens = tiny_decoder(tmp_path / "gemma3", family="gemma3_text")
    shards, out = tmp_path / "shards", tmp_path / "run"
    assert main(["data", "prepare", "toyworld", "--toyworld-documents", "400", "--tokenizer",
                 str(tmp_path / "gemma3"), "-o", str(shards), "--no-progress"]) == 0
    assert main(["cpt", str(tmp_path / "gemma3"), "--data", str(shards), "--steps", "40", "--seq-len", "128",
                 "--batch-tokens", "1024", "--output", str(out), "--no-progress"]) == 0
    record = json.loads((out / "cpt.json").read_text())
    assert record["model_type"] == "gemma3_text" and record["mask"]["mask_token_id"] == tokens
    assert record["bidirectional_sliding_window"] == "full"  # recorded: windows off in bidirectional mode
    losses = [r["loss"] for r in records(out)]
    assert len(losses) >= 4 and sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 0.3, losses
    config = load_checkpoint(out / "checkpoints" / "step-000040").config
    assert (config.norm_offset, config.block_norms, config.scale_embeddings, config.qk_norm) == (
        1.0, "sandwich", True, "head")
    assert (config.sliding_window, config.layer_types, config.mask_token_id) == (16, ["sliding", "full"], tokens)


def test_a_study_run_continues_from_a_hugging_face_decoder(qwen3, tmp_path, capsys):
    """`cpt: {decoder: DIR}` in a study's run: shards made with the decoder's tokenizer by the study,
    the decoder imported once into the run's start, MNTP continued pretraining, evaluation, report."""
    decoder, _ = qwen3
    spec = tmp_path / "study.yaml"
    spec.write_text(f"""name: qwen3-cpt
data: {{source: toyworld, toyworld_documents: 400, tokenizer: {decoder}}}
runs:
  - {{name: Qwen3-MNTP, cpt: {{decoder: {decoder}, objective: mntp, steps: 4}},
     overrides: [global_batch_tokens=1024, data.seq_len=128, log_every=1]}}
evaluation: {{tasks: [toy-sentiment], lrs: [1.0e-3], seeds: [0], max_steps: 2, batch_size: 8, max_length: 64,
             max_eval_examples: 8}}
""")
    out = tmp_path / "study"
    assert main(["study", "run", str(spec), "--output", str(out), "--dry-run"]) == 0  # before the shards exist
    assert "Qwen3-MNTP" in capsys.readouterr().out and not (out / "runs").exists()
    assert main(["study", "run", str(spec), "--output", str(out), "--no-progress"]) == 0
    assert f"pretrain Qwen3-MNTP (cpt from {Path(decoder).name}, 4 steps)" in capsys.readouterr().out
    run = out / "runs" / "Qwen3-MNTP"
    record = json.loads((run / "cpt.json").read_text())
    assert (record["model_type"], record["objective"], record["steps"]) == ("qwen3", "mntp", 4)
    assert record["mask"]["mask_token_id"] == 280  # the <mask> data prepare added after the 280 tokens
    config = load_checkpoint(run / "checkpoints" / "step-000004").config
    assert (config.qk_norm, config.vocab_size) == ("head", 320)
    assert [r["phase"] for r in records(run)] == ["mntp40"] * 4
    assert "| Qwen3-MNTP |" in (out / "report.md").read_text()
    # one of preset / cpt, exactly
    spec.write_text(spec.read_text().replace("{name: Qwen3-MNTP,", "{name: Qwen3-MNTP, preset: demo-clm,"))
    assert main(["study", "run", str(spec), "--output", str(tmp_path / "never"), "--dry-run"]) == 2
    assert "give a preset or cpt: {decoder: DIR}" in capsys.readouterr().err


def test_mntp_continued_pretraining_is_not_the_papers_mlm_cpt_kind():
    """The paper's CPT findings compare MLM continued pretraining; an MNTP (or CLM) continuation of
    the same CLM model is pretrained, but not that kind."""
    from encoderlab.study.findings import model_kinds

    facts = {"CLM": {"objectives": ["clm"], "cpt_parent": None},
             "MLM": {"objectives": ["mlm"], "cpt_parent": "CLM"},
             "MNTP": {"objectives": ["mntp"], "cpt_parent": "CLM"},
             "CLM-more": {"objectives": ["clm"], "cpt_parent": "CLM"}}
    kinds = {name: model_kinds(fact, facts) for name, fact in facts.items()}
    assert kinds == {"CLM": {"pretrained", "clm"}, "MLM": {"pretrained", "cpt<-clm"}, "MNTP": {"pretrained"},
                     "CLM-more": {"pretrained"}}


DETOUR = "phases=[{objective: mlm, mask_ratio: 0.3, steps: 2}, {objective: clm, steps: 2}, " \
         "{objective: mlm, mask_ratio: 0.3, steps: 2}]"


def test_encoders_continue_with_any_phase_list_from_encoderlab_and_eurobert_checkpoints(tmp_path, capsys):
    """The CLM detour of an encoder (arXiv 2605.12438): MLM -> CLM -> MLM continued pretraining, from an
    encoderlab checkpoint as it is and from a EuroBERT (transformers) export imported."""
    tiny_decoder(tmp_path / "llama", family="llama")
    prepare_shards(tmp_path / "llama", tmp_path / "shards")
    common = ["--seq-len", "128", "--batch-tokens", "1024", "--no-progress"]
    assert main(["cpt", str(tmp_path / "llama"), *common, "--data", str(tmp_path / "shards"), "--steps", "4",
                 "--output", str(tmp_path / "encoder"), "--export", str(tmp_path / "eurobert")]) == 0
    encoder = tmp_path / "encoder" / "checkpoints" / "step-000004"
    prepare_shards(tmp_path / "eurobert", tmp_path / "shards-eurobert")  # its tokenizer holds the mask token now
    for source, kind in ((encoder, "encoderlab"), (tmp_path / "eurobert", "eurobert")):
        out = tmp_path / f"detour-{kind}"
        data = tmp_path / ("shards" if kind == "encoderlab" else "shards-eurobert")
        assert main(["cpt", str(source), *common, "--data", str(data), "--steps", "6", "--output", str(out),
                     "--set", DETOUR, "--set", "log_every=1"]) == 0
        assert [r["phase"] for r in records(out)] == ["mlm30", "mlm30", "clm", "clm", "mlm30", "mlm30"]
        record = json.loads((out / "cpt.json").read_text())
        assert record["model_type"] == kind and record["phases"] == "mlm30 2 -> clm 2 -> mlm30 2"
        start, original = load_checkpoint(out / "init").state_dict(), load_checkpoint(encoder).state_dict()
        for name, weight in original.items():  # the run starts from the encoder's weights
            torch.testing.assert_close(start[name], weight, atol=1e-6, rtol=0)
    capsys.readouterr()
    (tmp_path / "modernbert").mkdir()
    (tmp_path / "modernbert" / "config.json").write_text(json.dumps({"model_type": "modernbert"}))
    assert main(["cpt", str(tmp_path / "modernbert"), *common, "--data", str(tmp_path / "shards"), "--steps", "6",
                 "--output", str(tmp_path / "m")]) == 2
    one_line_error(capsys, "'modernbert' is not supported", "EuroBERT encoders")
    assert not (tmp_path / "m").exists()
