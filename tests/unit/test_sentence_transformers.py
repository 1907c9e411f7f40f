"""`encoderlab export --target sentence-transformers`: SentenceTransformer(path) loads the folder and
gives encoderlab's bidirectional mean-pooled embeddings; the IR prefixes are its prompts."""

import pytest
import torch

pytest.importorskip("sentence_transformers")
from sentence_transformers import SentenceTransformer  # noqa: E402

from encoderlab.cli import main  # noqa: E402
from encoderlab.evaluation.backbone import mean_pool  # noqa: E402


def test_sentence_transformers_round_trip(tmp_path, tiny_checkpoint):
    """The exported model embeds a text as encoderlab's evaluation does: the same framing
    ([start] text [sep]) from a tokenizer whose post-processor adds nothing, bidirectional, mean
    pooling (compared with the evaluation's own path, Backbone.frame/encode, not the export's tokenizer)."""
    import json

    from encoderlab.evaluation.backbone import Backbone, pad_batch

    processor = json.loads((tiny_checkpoint / "tokenizer.json").read_text())["post_processor"]
    assert processor is None or not processor.get("special_tokens"), processor  # the case the export must fix
    out = tmp_path / "st"
    assert main(["export", str(tiny_checkpoint), str(out), "--target", "sentence-transformers"]) == 0
    st = SentenceTransformer(str(out), device="cpu")
    assert st.prompts["query"] == "Query: " and st.prompts["document"] == "Document: "
    assert st[1].get_config_dict()["pooling_mode"] == "mean"
    texts = ["Query: who founded the company", "Document: Ada Smith works in Paris.", "a longer sentence " * 5]
    theirs = st.encode(texts, convert_to_tensor=True, normalize_embeddings=False)
    backbone = Backbone(str(tiny_checkpoint))
    backbone.model.eval()
    framed = [backbone.frame(ids) for ids in backbone.encode_many(texts)]
    assert st.tokenizer(texts)["input_ids"] == framed  # the same ids, special tokens included
    ids, mask = pad_batch(framed, backbone.pad_id, torch.device("cpu"))
    with torch.no_grad():
        ours = mean_pool(backbone(ids, mask), mask)
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=1e-4)
    # the prompt is the protocol's prefix
    prompted = st.encode(["who founded the company"], prompt_name="query", convert_to_tensor=True)
    torch.testing.assert_close(prompted[0], theirs[0], atol=1e-5, rtol=1e-5)


def test_decoder_family_models_are_refused(tmp_path):
    import transformers

    from encoderlab.model import import_hf, save_checkpoint

    config = transformers.Qwen3Config(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=1, head_dim=16)
    transformers.Qwen3ForCausalLM(config).save_pretrained(tmp_path / "q")
    save_checkpoint(import_hf(tmp_path / "q"), tmp_path / "ckpt")
    assert main(["export", str(tmp_path / "ckpt"), str(tmp_path / "st"), "--target", "sentence-transformers",
                 "--tokenizer", str(tmp_path)]) == 2
    assert not (tmp_path / "st").exists()
