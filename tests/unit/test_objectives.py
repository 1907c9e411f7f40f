import pytest
import torch
import torch.nn.functional as F

from encoderlab.model import document_ids_from_lengths
from encoderlab.objectives import (CLMObjective, MLMObjective, TokenBatch, counter_uniform, counter_uniforms,
                                   linear_cross_entropy)


@pytest.mark.parametrize("chunk_size", [7, 64, 1000])
def test_linear_cross_entropy_matches_reference_loss_and_gradients(chunk_size):
    hidden = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 37, (50,))
    targets[::5] = -100
    ours = linear_cross_entropy(hidden, weight, targets, chunk_size=chunk_size)
    (2.5 * ours).backward()
    grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    reference = F.cross_entropy(hidden @ weight.T, targets, ignore_index=-100, reduction="sum")
    (2.5 * reference).backward()
    torch.testing.assert_close(ours, reference)
    torch.testing.assert_close(grads[0], hidden.grad)
    torch.testing.assert_close(grads[1], weight.grad)


def test_linear_cross_entropy_under_bf16_autocast_is_close_to_fp32():
    hidden = torch.randn(64, 32, requires_grad=True)
    weight = (torch.randn(300, 32) * 0.1).requires_grad_()
    targets = torch.randint(0, 300, (64,))
    reference = F.cross_entropy(hidden @ weight.T, targets, reduction="sum")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = linear_cross_entropy(hidden, weight, targets, chunk_size=16)
    ours.backward()
    assert ours.dtype == torch.float32 and weight.grad.dtype == torch.float32
    torch.testing.assert_close(ours, reference, rtol=2e-2, atol=0)
    with pytest.raises(ValueError, match="expected hidden"):
        linear_cross_entropy(hidden, weight, targets[:10])


def test_counter_uniform_is_a_pure_function_of_its_keys():
    a = counter_uniform(7, torch.tensor([3, 10, 11]), step=5, num_positions=64, stream=0)
    b = counter_uniform(7, torch.tensor([11, 3]), step=5, num_positions=64, stream=0)
    torch.testing.assert_close(a[0], b[1], rtol=0, atol=0)  # same sample, other batch: same draws
    torch.testing.assert_close(a[2], b[0], rtol=0, atol=0)
    for other in (counter_uniform(8, torch.tensor([3]), 5, 64, 0), counter_uniform(7, torch.tensor([3]), 6, 64, 0),
                  counter_uniform(7, torch.tensor([3]), 5, 64, 1)):
        assert not torch.equal(other[0], a[0])
    big = counter_uniform(0, torch.arange(200), step=0, num_positions=2048, stream=0)
    assert big.min() >= 0 and big.max() < 1
    assert big.mean().item() == pytest.approx(0.5, abs=2e-3)
    counts = torch.histc(big, bins=10, min=0, max=1) / big.numel()
    assert torch.allclose(counts, torch.full_like(counts, 0.1), atol=2e-3)


def test_counter_uniforms_keep_the_mask_definition_and_stack_streams():
    # Golden values of the hash as first released: a resumed or re-run study must draw the same
    # masks with any later version (these pin the definition, not an implementation).
    u = counter_uniform(42, torch.tensor([0, 5, 2**33 + 7]), step=977, num_positions=6, stream=1)
    assert (u * 2**32).long().tolist() == [
        [3857487872, 369503584, 4261667072, 1517728256, 3972612864, 2956187904],
        [799809152, 1191895552, 2052850304, 3078496512, 2185123072, 1320777344],
        [3372720640, 1156855936, 3132441344, 1171295744, 874516032, 2674094336],
    ]
    assert (counter_uniform(0, torch.tensor([3]), 0, 4, 0) * 2**32).long().tolist() == [
        [3631988736, 2718382336, 1534332928, 1518196096]]
    samples = torch.tensor([3, 10, 2**40 + 1])
    stacked = counter_uniforms(7, samples, 2**33 + 5, 64, (0, 1, 2))
    for row, stream in enumerate((0, 1, 2)):
        assert torch.equal(stacked[row], counter_uniform(7, samples, 2**33 + 5, 64, stream))


def test_compiled_mask_hash_matches_eager_bit_for_bit():
    # CUDA runs the compiled hash; inductor's CPU backend compiles the same graph, so the claim
    # "integer arithmetic, bit-identical" is checked here too (gpu_checks.py checks it on a GPU).
    from encoderlab.objectives import masking

    compiled = torch.compile(masking._hash_uniforms, dynamic=True)
    for samples, step, seed, length in (([0, 5, 2**33 + 7], 977, 42, 96), ([1, 2**62], 2**32 + 3, 2**31, 130)):
        sample = torch.tensor(samples)
        keys = torch.tensor([[(masking._STREAM_OFFSET * (s + 1)) & masking._M32, step & masking._M32,
                              seed & masking._M32] for s in (0, 1)])
        position = torch.arange(length)
        assert torch.equal(compiled(position, sample, keys), masking._hash_uniforms(position, sample, keys))
        assert torch.equal(compiled(position, sample, keys)[1],
                           counter_uniform(seed, sample, step, length, stream=1))


def _mlm(**kwargs):
    defaults = dict(mask_token_id=3, vocab_size=100, special_token_ids=(0, 1, 2), seed=11)
    return MLMObjective(**{**defaults, **kwargs})


def _batch(rows=64, length=256, vocab=100):
    ids = torch.randint(4, vocab, (rows, length))
    ids[:, 0] = 1  # bos
    docs = document_ids_from_lengths([[100, 120] for _ in range(rows)], length)
    ids[docs == -1] = 0  # padding token id
    return TokenBatch(ids, torch.arange(rows) + 1000, docs)


@pytest.mark.parametrize("ratio", [0.2, 0.4])
def test_mlm_selects_the_ratio_and_never_special_tokens_or_padding(ratio):
    batch = _batch()
    corrupted, selected = _mlm(ratio=ratio).corrupt(batch, step=0)
    eligible = (batch.input_ids > 3) & (batch.document_ids != -1)
    assert not selected[~eligible].any()
    assert selected[eligible].float().mean().item() == pytest.approx(ratio, abs=0.01)
    assert (corrupted[selected] == 3).all() and torch.equal(corrupted[~selected], batch.input_ids[~selected])


def test_mlm_80_10_10_replacement_split():
    batch = _batch()
    corrupted, selected = _mlm(ratio=0.5, mask_fraction=0.8, random_fraction=0.1, keep_fraction=0.1).corrupt(batch, 0)
    original, replaced = batch.input_ids[selected], corrupted[selected]
    masked = replaced == 3
    kept = replaced == original
    randomised = ~masked & ~kept
    assert masked.float().mean().item() == pytest.approx(0.8, abs=0.01)
    # a random draw equals the original with probability 1/96, which shifts a little mass to "kept"
    assert randomised.float().mean().item() == pytest.approx(0.1 * (1 - 1 / 96), abs=0.01)
    assert kept.float().mean().item() == pytest.approx(0.1 + 0.1 / 96, abs=0.01)
    assert (replaced[randomised] > 3).all()  # random replacements are regular tokens


def test_mlm_fractions_are_validated_with_a_tolerance():
    _mlm(ratio=0.3, mask_fraction=0.7, random_fraction=0.2, keep_fraction=0.1)  # sums to 0.9999999999999999
    with pytest.raises(ValueError, match=r"fractions \(mask, random, keep\).*summing to 1"):
        _mlm(ratio=0.3, mask_fraction=0.7, random_fraction=0.2, keep_fraction=0.2)
    with pytest.raises(ValueError, match=r"ratio: expected a value in \(0, 1\)"):
        _mlm(ratio=1.0)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        _mlm(ratio=0.3, mask_token_id=100)


def test_mlm_masks_do_not_depend_on_batch_composition():
    batch = _batch(rows=8)
    objective = _mlm(ratio=0.4)
    _, whole = objective.corrupt(batch, step=3)
    half = TokenBatch(batch.input_ids[4:], batch.sample_index[4:], batch.document_ids[4:])
    _, part = objective.corrupt(half, step=3)
    assert torch.equal(whole[4:], part)
    _, next_step = objective.corrupt(batch, step=4)
    assert not torch.equal(whole, next_step)


def test_mlm_loss_is_sparse_cross_entropy_on_selected_tokens(tiny_model):
    vocab = tiny_model.config.vocab_size
    batch = _batch(rows=3, length=240, vocab=vocab)
    objective = _mlm(ratio=0.3, vocab_size=vocab, chunk_size=17)
    out = objective(tiny_model, batch, step=2)
    corrupted, selected = objective.corrupt(batch, 2)
    logits = tiny_model(corrupted, attention="bidirectional", document_ids=batch.document_ids, logits_at="all").logits
    reference = F.cross_entropy(logits[selected], batch.input_ids[selected], reduction="sum")
    torch.testing.assert_close(out.loss_sum, reference, rtol=1e-5, atol=1e-4)
    assert out.num_targets.item() == selected.sum().item()


def test_clm_predicts_next_token_within_documents_only(tiny_model):
    vocab = tiny_model.config.vocab_size
    batch = _batch(rows=2, length=240, vocab=vocab)
    objective = CLMObjective(chunk_size=50)
    predict = objective.prediction_mask(batch)
    assert not predict[:, 99] .any() and predict[:, 98].all()  # last token of document 0 predicts nothing
    assert not predict[:, 219:].any()  # end of document 1 and the padding
    out = objective(tiny_model, batch, step=0)
    logits = tiny_model(batch.input_ids, attention="causal", document_ids=batch.document_ids, logits_at="all").logits
    labels = torch.full_like(batch.input_ids, -100)
    labels[:, :-1] = torch.where(predict[:, :-1], batch.input_ids[:, 1:], -100)
    reference = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="sum")
    torch.testing.assert_close(out.loss_sum, reference, rtol=1e-5, atol=1e-4)
    assert out.num_targets.item() == 2 * (99 + 119)


def test_sparse_and_dense_mlm_heads_give_the_same_loss_and_gradients(tiny_config):
    from encoderlab.model import build_encoder

    batch = _batch(rows=2, length=240, vocab=tiny_config.vocab_size)
    results = []
    for sparse in (True, False):
        model = build_encoder(tiny_config, seed=5)
        out = _mlm(ratio=0.4, vocab_size=tiny_config.vocab_size, sparse_head=sparse)(model, batch, step=1)
        out.loss_sum.backward()
        results.append((out.loss_sum, out.num_targets, model.lm_head.weight.grad, model.embed.weight.grad))
    sparse, dense = results
    torch.testing.assert_close(sparse[0], dense[0], rtol=1e-6, atol=1e-5)
    assert sparse[1] == dense[1]
    torch.testing.assert_close(sparse[2], dense[2], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sparse[3], dense[3], rtol=1e-5, atol=1e-6)
