"""The trainer tests' tiny prepared datasets and configs (tests/train/conftest.py), reused."""

from tests.train.conftest import make_config, single_torch_thread, tiny_data

__all__ = ["make_config", "single_torch_thread", "tiny_data"]
