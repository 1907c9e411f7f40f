import pytest
import torch

from encoderlab.model import ModelConfig, build_encoder
from encoderlab.threads import apply, env_threads, usable_cores
from testkit import prepare_shards, tiny_decoder

TIERS = {"e2e": 0, "gpu": 1, "unit": 2}  # tier folder -> the order the tiers run in
LONGEST = ("test_readme.py", "test_real_encoder.py")  # the two tests over a minute


def pytest_configure(config):
    """The suite follows encoderlab's thread policy (``encoderlab.threads``) with one torch thread per
    process: this process and, through ``ENCODERLAB_THREADS`` and the OpenMP variables it exports,
    every process a test starts (CLI commands, study jobs, fine-tuning workers, torchrun). With the
    default (one thread per core), torch processes that share the cores wait on each other at every
    operation and ran 3-20x slower here (issue 23). A value already in the environment is kept;
    the tests of the policy itself remove it where they need the policy's own choice."""
    apply(env_threads() or 1, export=True)


def pytest_collection_modifyitems(config, items):
    """A test's folder is its tier: ``unit`` (units and small integrations, ``make
    test-fast``), ``e2e`` (whole commands, processes, studies, real models) and ``gpu`` (needs a CUDA
    device; skipped without one). The tier is also a marker, so ``-m "not e2e"`` selects the same.

    Tests run longest first, so that under ``-n auto`` the many short unit tests fill the workers at
    the end instead of one long test finishing alone: the e2e tier first, its two longest files (over a
    minute each, docs/testing.md) at its head, the unit tier last."""
    for item in items:
        tier = item.path.parent.name
        if tier in TIERS:
            item.add_marker(tier)
    items.sort(key=lambda item: (item.path.name not in LONGEST, TIERS.get(item.path.parent.name, len(TIERS))))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker per usable core (CPU affinity and the cgroup quota, as the policy counts
    them), not every core the machine has."""
    return usable_cores()


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


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory):
    """A tiny random Qwen3 and shards made with its tokenizer (read only: cases copy what they change)."""
    where = tmp_path_factory.mktemp("qwen3")
    tiny_decoder(where / "qwen3")
    prepare_shards(where / "qwen3", where / "shards")
    return where / "qwen3", where / "shards"
