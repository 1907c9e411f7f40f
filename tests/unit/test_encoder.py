import ast

import pytest
import torch

from encoderlab.model import ModelConfig, build_encoder
from testkit import ROOT


def test_sparse_lm_head_equals_dense_at_selected_positions(tiny_model):
    tokens = torch.randint(0, tiny_model.config.vocab_size, (3, 17))
    selected = torch.rand(3, 17) < 0.4
    dense = tiny_model(tokens, attention="bidirectional", logits_at="all")
    sparse = tiny_model(tokens, attention="bidirectional", logits_at=selected)
    assert sparse.logits.shape == (int(selected.sum()), tiny_model.config.vocab_size)
    torch.testing.assert_close(sparse.logits, dense.logits[selected])
    flat = selected.flatten().nonzero().squeeze(1)
    torch.testing.assert_close(tiny_model.lm_logits(dense.hidden_states, flat), dense.logits[selected])


def test_hidden_states_only_by_default(tiny_model):
    out = tiny_model(torch.zeros(2, 5, dtype=torch.long), attention="bidirectional")
    assert out.logits is None and out.hidden_states.shape == (2, 5, tiny_model.config.hidden_size)


def test_same_weights_serve_both_modes_and_train(tiny_config):
    model = build_encoder(tiny_config, seed=0)
    tokens = torch.randint(0, tiny_config.vocab_size, (2, 12))
    causal = model(tokens, attention="causal", logits_at="all").logits
    bidir = model(tokens, attention="bidirectional", logits_at="all").logits
    # the first position sees only itself under a causal mask
    assert not torch.allclose(causal[:, 1:], bidir[:, 1:])
    (causal.logsumexp(-1).mean() + bidir.logsumexp(-1).mean()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_init_is_normal_002_and_seeded(tiny_config):
    config = tiny_config.replace(vocab_size=4096, hidden_size=128, num_heads=4, num_kv_heads=2)
    a, b = build_encoder(config, seed=3), build_encoder(config, seed=3)
    assert torch.equal(a.embed.weight, b.embed.weight)
    assert a.lm_head.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert a.layers[0].attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.equal(a.norm.weight, torch.ones_like(a.norm.weight))
    assert all(not name.endswith("bias") for name, _ in a.named_parameters())


def test_bad_inputs_are_named(tiny_model):
    with pytest.raises(ValueError, match="attention mode"):
        tiny_model(torch.zeros(1, 4, dtype=torch.long), attention="decoder")
    too_long = tiny_model.config.max_position_embeddings + 1
    with pytest.raises(ValueError, match="exceeds max_position_embeddings"):
        tiny_model(torch.zeros(1, too_long, dtype=torch.long), attention="causal")
    with pytest.raises(ValueError, match=r"input_ids: expected shape \(batch, seq_len\)"):
        tiny_model(torch.zeros(4, dtype=torch.long), attention="causal")


def test_bf16_autocast_runs(tiny_model):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = tiny_model(torch.randint(0, 100, (2, 8)), attention="causal", logits_at="all")
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.logits.float()).all()


def test_model_package_imports_nothing_from_training_data_or_evaluation():
    model_dir = ROOT / "src" / "encoderlab" / "model"
    forbidden = ("encoderlab.training", "encoderlab.data", "encoderlab.evaluation", "encoderlab.study",
                 "encoderlab.objectives", "torch.distributed")
    offenders = []
    for path in model_dir.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.startswith(forbidden)]
    assert offenders == []


def test_model_config_gqa_shapes():
    config = ModelConfig.from_name("tiny")
    model = build_encoder(config)
    assert model.layers[0].attn.qkv.weight.shape == (config.q_dim + 2 * config.kv_dim, config.hidden_size)
    assert config.kv_dim == config.q_dim // 2


def test_hand_written_backwards_match_autograd():
    from encoderlab.model.ops import apply_rope, silu_mul

    gate, up = torch.randn(3, 5, 8, dtype=torch.float64, requires_grad=True), torch.randn(3, 5, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(silu_mul, (gate, up))
    q = torch.randn(2, 3, 5, 8, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 1, 5, 8, dtype=torch.float64, requires_grad=True)
    angles = torch.rand(2, 1, 5, 4, dtype=torch.float64) * 6
    angles = torch.cat((angles, angles), dim=-1)
    cos, sin = angles.cos(), angles.sin()
    assert torch.autograd.gradcheck(lambda a, b: apply_rope(a, b, cos, sin), (q, k))
    # and the forward is the textbook rotate-half formula
    first, second = q.chunk(2, dim=-1)
    expected = q * cos + torch.cat((-second, first), dim=-1) * sin
    torch.testing.assert_close(apply_rope(q, k, cos, sin)[0], expected)
