"""Thin, explicit wrappers over the syscalls the network layer needs.

pyroute2 covers netlink; what it does not cover well (or covers by forking a
helper process whose failures leak sockets) lives here: creating and removing
named network namespaces, entering one (`enter_netns`, for good, or
`in_netns`, for a block), writing sysctls, and the legacy ethtool ioctls that
switch offloads off. This is the one ctypes wrapper of setns/unshare/mount:
`os.setns` and `os.unshare` arrive only with Python 3.12, and every caller
(`exec`, `sysfs`, the engine daemon, `in_netns`) goes through `setns` here.

Namespaces are per *thread* in Linux (`setns(2)` and `unshare(2)` change the
calling task only), so everything here enters a namespace on the current
thread and always returns, or runs in a short-lived helper thread. Nothing
forks, so it is safe in a process that already runs threads.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import os
import socket
import struct
import threading
from typing import Callable, Iterator

from emulator.errors import EnvironmentProblem, TestbedError

#: where named network namespaces live (iproute2's convention, `ip netns` sees them)
NETNS_RUN_DIR = "/run/netns"

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SHARED = 1 << 20
MNT_DETACH = 2

_libc: ctypes.CDLL | None = None


def libc() -> ctypes.CDLL:
    """The C library, loaded once, with errno captured for every call."""
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c") or "libc.so.6"
        _libc = ctypes.CDLL(name, use_errno=True)
    return _libc


def _check(result: int, what: str, target: str = "") -> None:
    """Raise the OSError that errno describes when a libc call returned -1."""
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", target or None)


def setns(fd: int, nstype: int) -> None:
    """Move the calling thread into the namespace open at `fd`."""
    _check(libc().setns(fd, nstype), "setns")


def unshare(flags: int) -> None:
    """Give the calling thread new namespaces of the kinds in `flags`."""
    _check(libc().unshare(flags), "unshare")


def mount(source: str, target: str, fstype: str | None, flags: int) -> None:
    """mount(2) without data; raises OSError naming `target`."""
    fs = fstype.encode() if fstype is not None else None
    _check(libc().mount(source.encode(), target.encode(), fs, flags, None), "mount", target)


def umount2(target: str, flags: int) -> None:
    """umount2(2); raises OSError naming `target`."""
    _check(libc().umount2(target.encode(), flags), "umount", target)


SO_SNDBUFFORCE = 32   # asm-generic/socket.h; Python's socket module lacks both
SO_RCVBUFFORCE = 33


def socket_buffers(sock: socket.socket, nbytes: int, *, send: bool = True, receive: bool = True) -> None:
    """Ask for `nbytes` of receive and/or send buffer on `sock`, beyond the host's
    net.core.rmem_max/wmem_max where allowed (SO_*BUFFORCE needs CAP_NET_ADMIN
    on the host); in a rootless sandbox, where it is refused, as much as those
    limits give (SO_*BUF): bursts may then overflow sooner, which the
    engine's kernel-drop count shows."""
    wanted = ([(SO_RCVBUFFORCE, socket.SO_RCVBUF)] if receive else []) + \
        ([(SO_SNDBUFFORCE, socket.SO_SNDBUF)] if send else [])
    for forced, plain in wanted:
        try:
            sock.setsockopt(socket.SOL_SOCKET, forced, nbytes)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, plain, nbytes)


def netns_path(name: str) -> str:
    """Path of the named network namespace `name`."""
    return os.path.join(NETNS_RUN_DIR, name)


def check_environment() -> None:
    """Raise EnvironmentProblem unless this process can make network namespaces."""
    if os.geteuid() != 0:
        raise EnvironmentProblem(
            "building a testbed needs root (network namespaces, veth pairs)",
        )
    if not os.path.exists("/proc/self/ns/net"):
        raise EnvironmentProblem("this kernel has no network namespaces (/proc/self/ns/net is missing)")


def _share_run_dir() -> None:
    """Make NETNS_RUN_DIR a shared mount, as iproute2 does.

    A namespace is kept alive by a bind mount on a file in this directory;
    the directory must be a shared mount point so that those bind mounts also
    appear in mount namespaces made later (`ip netns exec`, our own exec).
    """
    os.makedirs(NETNS_RUN_DIR, mode=0o755, exist_ok=True)
    try:
        mount("", NETNS_RUN_DIR, "none", MS_SHARED | MS_REC)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: not a mount point yet
            raise
        mount(NETNS_RUN_DIR, NETNS_RUN_DIR, "none", MS_BIND | MS_REC)
        mount("", NETNS_RUN_DIR, "none", MS_SHARED | MS_REC)


def create_netns(name: str) -> None:
    """Create the named network namespace `name`; TestbedError if it exists.

    The new namespace is made by a helper thread that unshares its own network
    namespace and bind-mounts it on `/run/netns/NAME`; the thread then ends,
    and the mount keeps the namespace alive.
    """
    _share_run_dir()
    path = netns_path(name)
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    except FileExistsError:
        raise TestbedError(f"network namespace {name!r} already exists") from None
    failure: list[BaseException] = []

    def make() -> None:
        try:
            unshare(CLONE_NEWNET)
            mount("/proc/thread-self/ns/net", path, "none", MS_BIND)
        except BaseException as exc:  # handed to the creating thread
            failure.append(exc)

    worker = threading.Thread(target=make, name=f"netns-{name}")
    worker.start()
    worker.join()
    if failure:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise TestbedError(f"cannot create network namespace {name!r}: {failure[0]}") from failure[0]


def create_netns_many(
    names: list[str],
    created: list[str],
    *,
    setup: Callable[[str], None] | None = None,
    threads: int = 2,
) -> None:
    """Create the named namespaces `names`, appending each one made to `created`.

    Like `create_netns`, but the /run/netns mount is set up once and each
    helper thread makes several namespaces: after its first unshare the
    thread unshares again, and the mount on the previous one's file keeps it
    alive. `setup(name)`, if given, runs in the helper thread while it is
    inside the fresh namespace (sysctls written there need no setns).
    `threads` helpers work in parallel: namespace creation runs
    the per-namespace init of every network subsystem, which the kernel does
    not serialise. Stops at the first failure (TestbedError naming the
    namespace); `created` then says which exist, in no particular order.
    """
    _share_run_dir()
    lock = threading.Lock()
    pending = list(reversed(names))
    failure: list[BaseException] = []

    def work() -> None:
        while True:
            with lock:
                if failure or not pending:
                    return
                name = pending.pop()
            path = netns_path(name)
            try:
                try:
                    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
                except FileExistsError:
                    raise TestbedError(f"network namespace {name!r} already exists") from None
                try:
                    unshare(CLONE_NEWNET)
                    mount("/proc/thread-self/ns/net", path, "none", MS_BIND)
                except BaseException as exc:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                    raise TestbedError(f"cannot create network namespace {name!r}: {exc}") from exc
                with lock:
                    created.append(name)
                if setup is not None:
                    setup(name)
            except BaseException as exc:  # handed to the calling thread
                with lock:
                    failure.append(exc)
                return

    workers = [threading.Thread(target=work, name=f"netns-{k}") for k in range(max(1, min(threads, len(names))))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failure:
        raise failure[0]


def netns_exists(name: str) -> bool:
    """True if `/run/netns/NAME` exists (mounted or a stale file)."""
    return os.path.lexists(netns_path(name))


def remove_netns(name: str) -> bool:
    """Remove the named namespace `name`; False if it was already gone.

    Unmounting drops the last reference held by the name; the kernel destroys
    the namespace, and with it its interfaces, once no process runs in it.
    """
    path = netns_path(name)
    if not os.path.lexists(path):
        return False
    try:
        umount2(path, MNT_DETACH)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: a stale file that is not mounted
            raise
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return True


def enter_netns(name: str, *, hint: str = "") -> None:
    """Move the calling thread into the named network namespace `name`, with no way back.

    For a process that lives there from now on (the exec trampoline, the
    sysfs child, the engine daemon); `in_netns` for a visit. TestbedError
    when the namespace does not exist (`hint` is added to that message) or
    cannot be entered.
    """
    try:
        fd = os.open(netns_path(name), os.O_RDONLY)
    except FileNotFoundError:
        raise TestbedError(f"network namespace {name!r} does not exist{hint}") from None
    try:
        setns(fd, CLONE_NEWNET)
    except OSError as exc:
        raise TestbedError(f"cannot enter network namespace {name!r}: {exc.strerror}") from exc
    finally:
        os.close(fd)


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the body with the current thread inside the named network namespace.

    Sockets created in the body stay in that namespace after it ends; files
    under /proc/sys/net opened in the body belong to it.
    """
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        enter_netns(name)
        try:
            yield
        finally:
            # Failing to return would leave this thread in the wrong namespace
            # and every later request would silently go astray: fail loudly.
            setns(original, CLONE_NEWNET)
    finally:
        os.close(original)


def write_sysctl(key: str, value: str | int) -> None:
    """Write `value` to sysctl `key` (dotted, `net.ipv4.ip_forward`) in the current namespace."""
    path = "/proc/sys/" + key.replace(".", "/")
    try:
        with open(path, "w") as f:
            f.write(f"{value}\n")
    except OSError as exc:
        raise TestbedError(f"cannot set sysctl {key}={value}: {exc.strerror}") from exc


def read_sysctl(key: str) -> str:
    """Value of sysctl `key` in the current namespace, stripped."""
    with open("/proc/sys/" + key.replace(".", "/")) as f:
        return f.read().strip()


# --- ethtool: the legacy per-feature ioctls (linux/ethtool.h) -----------------

SIOCETHTOOL = 0x8946

#: offload -> (get command, set command); the legacy ioctls, which the kernel
#: maps onto the feature bits, so they work on every driver including veth
OFFLOADS: dict[str, tuple[int, int]] = {
    "rx-checksum": (0x00000014, 0x00000015),  # ETHTOOL_GRXCSUM / SRXCSUM
    "tx-checksum": (0x00000016, 0x00000017),  # ETHTOOL_GTXCSUM / STXCSUM
    "scatter-gather": (0x00000018, 0x00000019),  # ETHTOOL_GSG / SSG
    "tso": (0x0000001E, 0x0000001F),  # ETHTOOL_GTSO / STSO
    "gso": (0x00000023, 0x00000024),  # ETHTOOL_GGSO / SGSO
    "gro": (0x0000002B, 0x0000002C),  # ETHTOOL_GGRO / SGRO
}

#: sizeof(struct ifreq) on Linux: 16-byte name + 24-byte union
_IFREQ_SIZE = 40


def _ethtool_value(sock: socket.socket, ifname: str, cmd: int, value: int = 0) -> int:
    """Issue one `struct ethtool_value` ioctl and return the value it holds after."""
    buf = array.array("B", struct.pack("II", cmd, value))
    address, _ = buf.buffer_info()
    ifreq = struct.pack("16sP", ifname.encode(), address).ljust(_IFREQ_SIZE, b"\0")
    fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)
    return int(struct.unpack("II", buf.tobytes())[1])


def offloads_off(sock: socket.socket, ifname: str) -> None:
    """Switch every offload in OFFLOADS off on `ifname`, in `sock`'s namespace.

    Without this, veth hands AF_PACKET 64 KiB TSO/GRO super-frames and
    frames with partial checksums, which the engine cannot forward as wire
    frames.
    """
    # Segmentation first: some drivers refuse to drop checksumming or SG
    # while a feature that depends on it is still on.
    for feature in ("gro", "gso", "tso", "scatter-gather", "tx-checksum", "rx-checksum"):
        try:
            _ethtool_value(sock, ifname, OFFLOADS[feature][1], 0)
        except OSError as exc:
            if exc.errno == errno.EOPNOTSUPP:
                continue  # cannot be on if it is not supported
            raise TestbedError(f"cannot switch {feature} offload off on {ifname}: {exc.strerror}") from exc


def read_offloads(sock: socket.socket, ifname: str) -> dict[str, bool]:
    """Current state of each offload in OFFLOADS on `ifname` (True = on)."""
    return {name: bool(_ethtool_value(sock, ifname, get)) for name, (get, _) in OFFLOADS.items()}


def netns_socket(name: str) -> socket.socket:
    """A UDP socket inside network namespace `name`, for ioctls there."""
    with in_netns(name):
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
