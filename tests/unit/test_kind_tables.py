"""The tables a new loss model or traffic kind is added to agree with what reads them.

A loss model is a row of emulator.model.loss.LOSS_KINDS and a case in
cext/loss.pxi; a traffic kind is a row of emulator.model.metrics.STREAM_KINDS
(with its metrics) and a StreamTools in emulator.traffic.kinds. These tests
hold each pair of halves to the same kinds, so a half-added kind fails here
rather than in a run.
"""

from __future__ import annotations

import pytest

from emulator.errors import EngineParamError, InputError
from emulator.model import metrics
from emulator.model.linkparams import LinkParams
from emulator.model.loss import LOSS_KINDS, LOSS_PARAMS, LossModel, read_loss
from emulator.model.netem import parse_netem_words
from emulator.scenario.scenario import TRAFFIC_KINDS, TRAFFIC_METRICS
from emulator.traffic.kinds import TOOLS, StreamTools

engine = pytest.importorskip("emulator._engine")


def _model(kind) -> LossModel:
    """A model of `kind` with every probability at 50 % (each kind takes any value in 0..1)."""
    return LossModel(kind.name, (0.5,) * len(kind.parameters))


@pytest.mark.parametrize("kind", LOSS_KINDS, ids=lambda k: k.name)
def test_every_loss_kind_runs_in_the_engine(kind) -> None:
    """Each row's number is a model the engine knows: 2000 packets pass through it offline."""
    params = LinkParams(loss=_model(kind))
    result = engine.offline_run(params.to_engine(), [i * 1000 for i in range(2000)], [100] * 2000, 3)
    lost = result["counters"]["drops"]["loss"]
    if kind.lossless(_model(kind).probabilities):
        assert lost == 0
    else:
        assert 0 < lost < 2000   # every model with 50 % probabilities both drops and delivers


def test_the_engine_knows_no_loss_kind_beyond_the_table() -> None:
    """LOSS_COUNT in cext/loss.pxi is the table's length: the next number is refused."""
    data = LinkParams().to_engine()
    data["loss_kind"] = len(LOSS_KINDS)
    with pytest.raises(EngineParamError, match="loss_kind"):
        engine.offline_run(data, [0], [100], 1)
    data = LinkParams().to_engine()
    data["loss_p"] = [0.0] * (LOSS_PARAMS + 1)
    with pytest.raises(EngineParamError, match="loss_p"):
        engine.offline_run(data, [0], [100], 1)


@pytest.mark.parametrize("kind", [k for k in LOSS_KINDS if k.name != "none"], ids=lambda k: k.name)
def test_every_loss_kind_reads_back_from_its_words(kind) -> None:
    """netem's words for each model (LossModel.words) read back as the same model."""
    model = LossModel(kind.name, tuple(0.01 * (i + 1) for i in range(len(kind.parameters))))
    assert parse_netem_words(model.words(), LinkParams()).loss == model


def test_left_out_probabilities_take_the_kinds_defaults() -> None:
    class Words:
        def __init__(self, words: list[str]) -> None:
            self.words = words

        def take(self, keyword: str, example: str) -> str:
            return self.words.pop(0)

        def next_is_number(self) -> bool:
            return bool(self.words)

        def reject_correlation(self, keyword: str) -> None:
            assert not self.words

    assert read_loss(Words(["gemodel", "1%"])) == LossModel("gemodel", (0.01, 0.99, 1.0, 0.0))
    assert read_loss(Words(["state", "2%", "10%"])) == LossModel("state", (0.02, 0.10, 0.0, 1.0, 0.0))
    assert read_loss(Words(["0.5%"])) == LossModel("random", (0.005,))
    with pytest.raises(InputError, match="takes 4 probabilities"):
        LossModel("gemodel", (0.1,))


def test_every_traffic_kind_has_its_tools_and_metrics() -> None:
    names = [k.name for k in metrics.STREAM_KINDS]
    assert tuple(names) == TRAFFIC_KINDS
    assert set(TOOLS) == set(names)
    for kind in metrics.STREAM_KINDS:
        tools = TOOLS[kind.name]
        assert type(tools) is not StreamTools      # a subclass, not the base
        assert TRAFFIC_METRICS[kind.name], f"{kind.name} registers no metric"
        assert kind.rate_field in ("rate_pps", "rate_bps")
        assert tools.files("s") and all("s" in f for f in tools.files("s").values())
    # an instrument stream is what the failover traces follow: at least one kind is one
    assert any(k.instrument for k in metrics.STREAM_KINDS)
    # ports of different kinds do not collide for the streams a scenario can hold
    bases = sorted({t.base_port for t in TOOLS.values()})
    assert all(b - a >= 1000 for a, b in zip(bases, bases[1:]))
