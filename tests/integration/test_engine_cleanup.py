"""FastPath leaves nothing open when a link cannot be added.

A link whose second end names no interface fails after its first end's
AF_PACKET socket is open and after an earlier link was added to the engine:
every socket opened so far must be closed again, and the engine's C blocks
freed. The ends bind to `lo` (AF_PACKET needs root, not a namespace: nothing
is sent, and the engine loop is never started).
"""

from __future__ import annotations

import gc
import os
import warnings

import pytest

from emulator import _engine
from emulator.engine.fastpath import EngineOptions, FastPath, LinkSpec
from emulator.model.linkparams import LinkParams
from tests.integration.conftest import requires_root

pytestmark = [pytest.mark.root, requires_root]


def spec(name: str, b_ifname: str = "lo", **b_to_a: object) -> LinkSpec:
    forced = LinkParams(delay_ns=1_000_000)
    for field, value in b_to_a.items():
        object.__setattr__(forced, field, value)  # past LinkParams' own checks, as a future path might
    return LinkSpec(name=name, a_node="aktau", b_node="sumgait", a_ifname="lo", b_ifname=b_ifname,
                    max_frame=1518, a_to_b=LinkParams(delay_ns=1_000_000), b_to_a=forced,
                    seed_a_to_b=1, seed_b_to_a=2)


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("bad, error", [
    (spec("second", b_ifname="csp-no-such0"), OSError),          # bind fails for end b
    (spec("second", delay_ns=2**64), Exception),                 # refused after both ends are open
])
def test_a_link_that_cannot_be_added_leaves_no_socket_open(bad: LinkSpec, error: type[Exception]) -> None:
    gc.collect()
    fds, blocks = open_fds(), _engine.allocated_blocks()
    options = EngineOptions(slots_per_direction=16, shards=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)  # a socket closed only by the GC is a leak
        with pytest.raises(error):
            FastPath([spec("first"), bad], options)
        gc.collect()
    assert open_fds() == fds
    assert _engine.allocated_blocks() == blocks
    # and the same links, the bad one left out, come up and close cleanly
    fastpath = FastPath([spec("first")], options)
    assert fastpath.shards == 1 and len(open_fds() - fds) >= 2
    fastpath.close()
    del fastpath
    gc.collect()
    assert open_fds() == fds
