"""The benchmarks' one timer synchronizes CUDA devices it is given, and nothing on the CPU."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import torch
from registry_helpers import suite_registry

from flowkit.bench import timing
from flowkit.bench.subjects import build_model


@pytest.fixture
def synchronized(monkeypatch: pytest.MonkeyPatch) -> list[torch.device]:
    """Record the devices ``torch.cuda.synchronize`` is called with (no CUDA needed)."""
    calls: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    return calls


def test_stopwatch_synchronizes_cuda_before_starting_and_before_reading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ticks = iter([10.0, 12.5])
    events: list[str] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append("sync"))
    clock_reads = SimpleNamespace(perf_counter=lambda: events.append("clock") or next(ticks))
    monkeypatch.setattr(timing, "time", clock_reads)  # this module's clock only
    with timing.stopwatch("cuda:1") as clock:
        events.append("work")
    assert events == ["sync", "clock", "work", "sync", "clock"]
    assert clock.seconds == 2.5


def test_stopwatch_finds_cuda_devices_among_what_it_is_given(
    synchronized: list[torch.device],
) -> None:
    with timing.stopwatch(torch.zeros(2), [torch.device("cuda", 0), None], "cuda:1"):
        pass
    assert sorted(map(str, synchronized)) == ["cuda:0", "cuda:0", "cuda:1", "cuda:1"]


def test_stopwatch_never_synchronizes_on_the_cpu(synchronized: list[torch.device]) -> None:
    module = torch.nn.Linear(2, 2)
    x = torch.zeros(3, 2)
    with timing.stopwatch(x, module, "cpu", torch.device("meta")) as clock:
        time.sleep(0.01)
    assert synchronized == []
    assert clock.seconds >= 0.01
    assert timing.median_time(lambda: module(x), x, module, repeats=3) > 0
    assert synchronized == []


def test_model_timings_synchronize_the_device_of_the_data(
    synchronized: list[torch.device], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The speed suite's measured calls go through the stopwatch with the data's device."""
    seen: list[tuple[object, ...]] = []
    real = timing.cuda_devices

    def spy(*involved: object) -> set[torch.device]:
        seen.append(involved)
        return real(*involved) | {torch.device("cuda", 0)}  # as if the data lived on CUDA

    monkeypatch.setattr(timing, "cuda_devices", spy)
    torch.manual_seed(0)
    field = suite_registry().create("vector_field", "mlp", dim=2, hidden=(8,))
    model = build_model(
        "flowkit",
        field,
        dim=2,
        integrator="rk4",
        trace="exact",
        gradient="backprop",
        rtol=1e-3,
        atol=1e-3,
        steps=4,
    )
    x = torch.randn(5, 2)
    _, lp = model.log_prob(x)
    _, step = model.train_step(x)
    assert len(synchronized) == 4  # before and after each of the two timed calls
    assert all(any(item is x for item in involved) for involved in seen)
    assert lp.seconds > 0 and step.seconds > 0


def test_unknown_things_to_time_on_are_an_error() -> None:
    with pytest.raises(TypeError, match="cannot tell the device of a float"):
        timing.cuda_devices(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        timing.median_time(lambda: None, repeats=0)
