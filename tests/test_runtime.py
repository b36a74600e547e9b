"""runtime.py: bf16 autocast only where the CPU has native bfloat16 (elsewhere it is far slower)."""

import warnings

import pytest
import torch

from facefair import runtime


@pytest.fixture(autouse=True)
def fresh_process():
    """Each test as the first to ask: the ignored-bf16 warning is said once per process."""
    runtime.say_bf16_ignored.cache_clear()
    yield
    runtime.say_bf16_ignored.cache_clear()


@pytest.mark.parametrize("native", [True, False])
def test_cpu_bf16_autocast_follows_the_hardware(monkeypatch, native):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
    layer = torch.nn.Linear(4, 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with runtime.autocast_context(torch.device("cpu"), amp=False, bf16=True):
            out = layer(torch.randn(2, 4))
    assert out.dtype == (torch.bfloat16 if native else torch.float32)
    assert any("--bf16 ignored" in str(w.message) for w in caught) == (not native)


def test_no_bf16_requested_stays_fp32_without_a_warning(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert runtime.use_cpu_bf16(False) is False
        with runtime.autocast_context(torch.device("cpu"), amp=True, bf16=False):
            assert torch.nn.Linear(2, 2)(torch.randn(1, 2)).dtype == torch.float32



def test_ignored_bf16_is_said_once_however_many_steps_and_evaluations(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):  # epochs: training steps, then an evaluation whose metrics silence warnings
            runtime.use_cpu_bf16(True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
    assert sum("--bf16 ignored" in str(w.message) for w in caught) == 1
