"""LinkParams: the one typed form of a link direction's parameters."""

import pytest

from emulator.errors import InputError
from emulator.model.linkparams import LinkParams, LossModel


def test_defaults_are_a_perfect_wire() -> None:
    params = LinkParams()
    assert params.delay_ns == 0 and params.rate_bps == 0
    assert params.loss.is_lossless


@pytest.mark.parametrize(
    "changes",
    [{"delay_ns": -1}, {"rate_bps": -5}, {"duplicate": 1.5}, {"distribution": "cauchy"}],
)
def test_bad_values_are_rejected_with_a_fix(changes: dict) -> None:
    with pytest.raises(InputError):
        LinkParams(**changes)


def test_loss_model_arity_and_range() -> None:
    assert LossModel("gemodel", (0.01, 0.3, 1.0, 0.0)).kind == "gemodel"
    with pytest.raises(InputError):
        LossModel("gemodel", (0.01,))
    with pytest.raises(InputError, match="outside 0..100%"):
        LossModel("random", (1.2,))


def test_engine_dict_pads_loss_probabilities() -> None:
    engine = LinkParams(loss=LossModel("random", (0.01,))).to_engine()
    assert engine["loss_p"] == [0.01, 0.0, 0.0, 0.0, 0.0]
    assert engine["loss_kind"] == 1
