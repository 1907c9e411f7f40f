import pytest
import torch

from encoderlab.model import ModelConfig, build_encoder


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
