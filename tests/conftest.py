import os

import pytest
import torch

from encoderlab.model import ModelConfig, build_encoder


def pytest_configure(config):
    """Under pytest-xdist, each worker process takes its share of the usable cores (CPU affinity), so
    its torch threads and the processes its tests start follow encoderlab's thread policy
    (``encoderlab.threads``: usable cores, affinity included) instead of all crowding every core."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not worker or not count or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    index, workers = int(worker.removeprefix("gw")), int(count)
    if workers > len(cores):
        return
    share = [core for i, core in enumerate(cores) if i % workers == index % workers]
    os.sched_setaffinity(0, share)
    torch.set_num_threads(len(share))


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture
def tiny_config() -> ModelConfig:
    return ModelConfig.from_name("tiny")


@pytest.fixture
def tiny_model(tiny_config):
    return build_encoder(tiny_config, seed=0).eval()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny encoderlab checkpoint with a toyworld BPE tokenizer, for fine-tuning tests."""
    from encoderlab.data import iter_documents, parse_source, train_tokenizer
    from encoderlab.model import save_checkpoint

    root = tmp_path_factory.mktemp("model")
    tokenizer = train_tokenizer(iter_documents(parse_source("toyworld", toyworld_documents=3000)), 384, root / "tok")
    config = ModelConfig.from_name("tiny", vocab_size=len(tokenizer), pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                   mask_token_id=3)
    return save_checkpoint(build_encoder(config, seed=0), root / "ckpt", tokenizer_dir=root / "tok")
