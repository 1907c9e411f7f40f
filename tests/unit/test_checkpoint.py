import json

import pytest
import torch

from encoderlab.io import atomic_directory
from encoderlab.model import CheckpointError, build_encoder, load_checkpoint, save_checkpoint


def test_save_load_round_trip(tmp_path, tiny_model):
    path = save_checkpoint(tiny_model, tmp_path / "ckpt")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_checkpoint(path).eval()
    tokens = torch.randint(0, tiny_model.config.vocab_size, (2, 9))
    for mode in ("causal", "bidirectional"):
        torch.testing.assert_close(
            loaded(tokens, attention=mode, logits_at="all").logits,
            tiny_model(tokens, attention=mode, logits_at="all").logits, atol=0, rtol=0,
        )
    assert loaded.config == tiny_model.config


def test_existing_checkpoint_is_not_overwritten_silently(tmp_path, tiny_model):
    save_checkpoint(tiny_model, tmp_path / "ckpt")
    with pytest.raises(FileExistsError, match="already exists"):
        save_checkpoint(tiny_model, tmp_path / "ckpt")
    save_checkpoint(tiny_model, tmp_path / "ckpt", overwrite=True)


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "out") as tmp:
            (tmp / "half.bin").write_bytes(b"x")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_pickled_weights_are_refused(tmp_path, tiny_model):
    path = save_checkpoint(tiny_model, tmp_path / "ckpt")
    (path / "model.safetensors").unlink()
    torch.save(tiny_model.state_dict(), path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"pickle files \(pytorch_model.bin\).*only loads safetensors"):
        load_checkpoint(path)


def test_hf_directory_gets_a_hint(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckpointError, match="model_type 'bert'.*encoderlab import"):
        load_checkpoint(tmp_path)


def test_missing_directory_and_shape_mismatch(tmp_path, tiny_config):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope")
    path = save_checkpoint(build_encoder(tiny_config), tmp_path / "ckpt")
    meta = json.loads((path / "config.json").read_text())
    meta["model"]["hidden_size"] = 128
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"tensor 'embed.weight' has shape \(384, 64\), expected \(384, 128\)"):
        load_checkpoint(path)


def test_outputs_get_the_mode_of_a_plain_write_not_a_private_temporary_one(tmp_path):
    """Files and directories written through a temporary and a rename (checkpoints, manifests,
    reports) are readable by whoever a plain open/mkdir would let read them (umask), not only
    by their owner as mkstemp/mkdtemp leave them: cluster projects share these folders."""
    import os
    import stat

    from encoderlab.io import atomic_directory, atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        with atomic_directory(tmp_path / "ckpt") as tmp:
            (tmp / "w").write_text("x")
        os.umask(0o077)
        atomic_write_text(tmp_path / "private.json", "{}")
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
    assert mode(tmp_path / "a.json") == 0o644 and mode(tmp_path / "ckpt") == 0o755
    assert mode(tmp_path / "private.json") == 0o600  # a stricter umask is honoured
