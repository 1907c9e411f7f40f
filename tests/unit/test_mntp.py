"""MNTP (LLM2Vec): the token at masked position i is predicted from the hidden state at i-1,
bidirectional attention; checked against a hand computation. And the soft-capped LM loss."""

import torch
import torch.nn.functional as F

from encoderlab.model import ModelConfig, build_encoder, document_ids_from_lengths
from encoderlab.objectives import MLMObjective, MNTPObjective, TokenBatch, linear_cross_entropy


def _batch():
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 384, (3, 24), generator=generator)
    docs = document_ids_from_lengths([[10, 14], [24], [7, 9]], 24)  # row 2: 8 tokens of padding
    ids = torch.where(docs == -1, 0, ids)
    return TokenBatch(ids, torch.tensor([5, 6, 7]), docs)


def test_mntp_loss_matches_a_hand_computation():
    model = build_encoder(ModelConfig.from_name("tiny"), seed=0).eval()
    batch = _batch()
    objective = MNTPObjective(0.4, mask_token_id=3, vocab_size=384, special_token_ids=(0, 1, 2), seed=0)
    out = objective(model, batch, step=2)

    # by hand: the same corruption as MLM, full logits of a bidirectional pass, target i read at i - 1
    mlm = MLMObjective(0.4, mask_token_id=3, vocab_size=384, special_token_ids=(0, 1, 2), seed=0)
    corrupted, selected = mlm.corrupt(batch, step=2)
    with torch.no_grad():
        logits = model(corrupted, attention="bidirectional", document_ids=batch.document_ids, logits_at="all").logits
    total, count, skipped = 0.0, 0, 0
    docs = batch.document_ids
    for b in range(3):
        for i in range(24):
            if not selected[b, i]:
                continue
            if i == 0 or docs[b, i - 1] != docs[b, i]:  # opens a document: nothing to predict it from
                skipped += 1
                continue
            total += F.cross_entropy(logits[b, i - 1][None], batch.input_ids[b, i][None], reduction="sum").item()
            count += 1
    assert count > 10 and skipped >= 1  # the test exercises both cases
    assert out.num_targets.item() == count == objective.num_targets(batch, 2).item()
    assert abs(out.loss_sum.item() - total) < 1e-3 * max(1.0, total)
    # and it differs from MLM, which reads position i itself
    assert abs(mlm(model, batch, 2).loss_sum.item() - total) > 1e-3


def test_mntp_trains_its_gradient():
    model = build_encoder(ModelConfig.from_name("tiny"), seed=0)
    objective = MNTPObjective(0.4, mask_token_id=3, vocab_size=384, special_token_ids=(0, 1, 2))
    out = objective(model, _batch(), step=0)
    out.loss_sum.backward()
    assert model.lm_head.weight.grad.abs().sum() > 0 and model.embed.weight.grad.abs().sum() > 0


def test_softcapped_linear_cross_entropy_matches_autograd():
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn(13, 16, generator=generator, requires_grad=True)
    weight = (torch.randn(50, 16, generator=generator) * 2).requires_grad_()
    targets = torch.randint(0, 50, (13,), generator=generator)
    targets[3] = -100
    loss = linear_cross_entropy(hidden, weight, targets, chunk_size=4, softcap=3.0)
    loss.backward()
    h2, w2 = hidden.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_()
    logits = torch.tanh((h2 @ w2.T) / 3.0) * 3.0
    reference = F.cross_entropy(logits, targets, ignore_index=-100, reduction="sum")
    reference.backward()
    torch.testing.assert_close(loss, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(hidden.grad, h2.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weight.grad, w2.grad, atol=1e-5, rtol=1e-5)
