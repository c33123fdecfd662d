"""netem words, including iproute2's defaults for omitted loss-model parameters."""

import pytest

from emulator.errors import InputError, UnitError
from emulator.model.linkparams import LinkParams, LossModel
from emulator.model.netem import NETEM_WORDS, parse_netem_words

BASE = LinkParams(delay_ns=1_000, rate_bps=10**9)


def test_delay_jitter_correlation_distribution() -> None:
    params = parse_netem_words("delay 5ms 1ms 25% distribution normal", BASE)
    assert (params.delay_ns, params.jitter_ns, params.jitter_correlation) == (5_000_000, 1_000_000, 0.25)
    assert params.distribution == "normal"


def test_list_and_string_forms_agree() -> None:
    assert parse_netem_words(["delay", "5ms", "loss", "1%"], BASE) == parse_netem_words("delay 5ms loss 1%", BASE)


def test_words_not_given_keep_base() -> None:
    params = parse_netem_words("loss 1%", BASE)
    assert params.delay_ns == 1_000 and params.rate_bps == 10**9
    assert parse_netem_words("", BASE) == BASE


def test_separate_jitter_and_correlation_words() -> None:
    params = parse_netem_words("jitter 50us correlation 10% distribution pareto", BASE)
    assert (params.jitter_ns, params.jitter_correlation, params.distribution) == (50_000, 0.1, "pareto")


@pytest.mark.parametrize("words", ["loss 1%", "loss random 1%"])
def test_random_loss(words: str) -> None:
    assert parse_netem_words(words, BASE).loss == LossModel("random", (0.01,))


def test_zero_loss_is_no_loss() -> None:
    assert parse_netem_words("loss 0%", parse_netem_words("loss 5%", BASE)).loss == LossModel()


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        # iproute2 q_netem.c defaults: r = 1 - p, 1-h = 100 %, 1-k = 0 %
        ("loss gemodel 1%", (0.01, 0.99, 1.0, 0.0)),
        ("loss gemodel 1% 30%", (0.01, 0.3, 1.0, 0.0)),
        ("loss gemodel 1% 30% 50%", (0.01, 0.3, 0.5, 0.0)),
        ("loss gemodel 1% 30% 100% 0.1%", (0.01, 0.3, 1.0, 0.001)),
    ],
)
def test_gemodel_defaults(words: str, expected: tuple) -> None:
    loss = parse_netem_words(words, BASE).loss
    assert loss.kind == "gemodel"
    assert loss.probabilities == pytest.approx(expected)


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        # iproute2 q_netem.c defaults: p31 = 1 - p13, p32 = 0, p23 = 100 %, p14 = 0
        ("loss state 2%", (0.02, 0.98, 0.0, 1.0, 0.0)),
        ("loss state 2% 40%", (0.02, 0.4, 0.0, 1.0, 0.0)),
        ("loss state 2% 40% 5% 60% 0.5%", (0.02, 0.4, 0.05, 0.6, 0.005)),
    ],
)
def test_state_defaults(words: str, expected: tuple) -> None:
    loss = parse_netem_words(words, BASE).loss
    assert loss.kind == "state"
    assert loss.probabilities == pytest.approx(expected)


def test_loss_model_followed_by_other_words() -> None:
    params = parse_netem_words("loss gemodel 1% 30% delay 2ms", BASE)
    assert params.loss.probabilities == pytest.approx((0.01, 0.3, 1.0, 0.0)) and params.delay_ns == 2_000_000


def test_other_fields() -> None:
    params = parse_netem_words(
        "duplicate 1% corrupt 0.1% reorder 5% rate 100mbit overhead 38 limit 50 limit_bytes 64kb seed 9", BASE
    )
    assert (params.duplicate, params.corrupt, params.reorder) == pytest.approx((0.01, 0.001, 0.05))
    assert (params.rate_bps, params.overhead_bytes, params.limit_packets) == (10**8, 38, 50)
    assert (params.limit_bytes, params.seed) == (65536, 9)


def test_rate_with_overhead_like_tc() -> None:
    params = parse_netem_words("rate 1gbit 20", BASE)
    assert (params.rate_bps, params.overhead_bytes) == (10**9, 20)


def test_last_word_wins() -> None:
    assert parse_netem_words("delay 1ms delay 2ms", BASE).delay_ns == 2_000_000


def test_unknown_word_suggests_and_lists() -> None:
    with pytest.raises(InputError) as info:
        parse_netem_words("dealy 5ms", BASE)
    assert "unknown netem word 'dealy'" in str(info.value)
    assert "did you mean 'delay'?" in info.value.fix
    for word in NETEM_WORDS:
        assert word in info.value.fix


@pytest.mark.parametrize(
    ("words", "error", "message"),
    [
        ("delay", InputError, "delay needs a value"),
        ("delay 5", UnitError, "has no unit"),
        ("delay -5ms", UnitError, "negative delay"),
        ("loss 120%", UnitError, "over 100%"),
        ("loss 0.5", UnitError, "is not a percentage"),
        ("loss 1% 25%", InputError, "loss correlation '25%' is not modelled"),
        ("duplicate 1% 25%", InputError, "duplicate correlation"),
        ("loss gemodel", InputError, "needs a value"),
        ("loss gemodel 1% 130%", UnitError, "over 100%"),
        ("distribution cauchy", InputError, "unknown jitter distribution 'cauchy'"),
        ("rate 100", UnitError, "has no unit"),
        ("rate 1furlong", UnitError, "unknown unit"),
        ("limit many", InputError, "not a whole number"),
        ("limit -1", InputError, "not a whole number"),
        ("overhead 1.5", InputError, "not a whole number"),
        ("seed 99999999999999999999999", InputError, "64 bits"),
        ("slot 1ms", InputError, "unknown netem word 'slot'"),
    ],
)
def test_bad_words(words: str, error: type, message: str) -> None:
    with pytest.raises(error) as info:
        parse_netem_words(words, BASE)
    assert message in str(info.value)


def test_distribution_typo_suggests() -> None:
    with pytest.raises(InputError) as info:
        parse_netem_words("distribution norml", BASE)
    assert "did you mean 'normal'?" in info.value.fix
