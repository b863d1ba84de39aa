"""Shared fixtures: the bundled real sample, the larger real subset (when present), a tiny synthetic LOCO tree,
a decompression-bomb PNG, a read-only folder, a network that cannot be reached, and (for every test) no network
beyond this machine."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest
from PIL import Image

from loco_ad.data import SAMPLE_ROOT
from tests.loco_tree import make_loco_tree

# The larger real subset (juice_bottle: 40 train, 22 good and 71 logical test images at 400×800):
# $LOCO_AD_SHARED_DATA, else the project's shared folder beside the checkout.
SHARED_DATA_ENV = "LOCO_AD_SHARED_DATA"
LOCO_SUBSET = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec_loco_subset"


_LOCAL_HOSTS = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture(autouse=True)
def only_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test: resolving or connecting to any host but this machine fails at once, so no test reaches a hub.

    Downloads are mocked where a test needs one; anything unmocked that tries the network gets an ``OSError``, as
    it would with no network, instead of reaching Hugging Face or dl.fbaipublicfiles.com.
    """
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(sock: socket.socket, address) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in _LOCAL_HOSTS:
            raise OSError(f"tests must not reach the network (connect to {address[0]})")
        return real_connect(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if host is not None and str(host) not in _LOCAL_HOSTS:
            raise socket.gaierror(f"tests must not reach the network (lookup of {host})")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def loco_sample() -> Path:
    """The data root of the sample shipped with the package (``juice_bottle``: 8 train, 6 good, 10 logical)."""
    assert (SAMPLE_ROOT / "juice_bottle" / "train" / "good").is_dir(), f"the bundled sample is missing from {SAMPLE_ROOT}"
    return SAMPLE_ROOT


@pytest.fixture
def loco_subset() -> Path:
    """The data root of the larger real subset; skips the test when it is absent.

    Found at ``$LOCO_AD_SHARED_DATA`` or ``../shared/data/mvtec_loco_subset`` beside the checkout.
    """
    root = Path(os.environ.get(SHARED_DATA_ENV) or LOCO_SUBSET)
    if not (root / "juice_bottle").is_dir():
        pytest.skip(f"real MVTec LOCO subset not found at {root} (set {SHARED_DATA_ENV} to its folder)")
    return root


@pytest.fixture
def tiny_loco_root(tmp_path: Path) -> Path:
    """Data root of a tiny synthetic ``juice_bottle`` category (6 train, 2 validation, 3 good, 3 logical, 2 structural)."""
    return make_loco_tree(tmp_path / "loco")


@pytest.fixture(scope="session")
def bomb_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A flat 14000×14000 PNG (196 million pixels, above Pillow's decompression-bomb limit; 24 KB on disk)."""
    path = tmp_path_factory.mktemp("bomb") / "huge.png"
    Image.new("1", (14000, 14000)).save(path)
    return path


@pytest.fixture
def make_read_only() -> Iterator[Callable[[Path], Path]]:
    """Makes an existing folder (and its sub-folders) read-only for everyone until the test ends.

    Mode 0o555, plus the immutable attribute (``chattr +i``) when running as
    root, whom modes do not stop. Skips the test when the folder stays writable.
    """
    done: list[tuple[Path, bool]] = []

    def make(folder: Path) -> Path:
        for path in [folder, *(p for p in folder.rglob("*") if p.is_dir())][::-1]:
            path.chmod(0o555)
            immutable = os.geteuid() == 0 and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
            done.append((path, immutable))
        try:
            (folder / ".probe").touch()
        except OSError:
            return folder
        (folder / ".probe").unlink()
        pytest.skip("cannot make a folder read-only here (root without chattr +i)")

    yield make
    for path, immutable in done[::-1]:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o755)


@pytest.fixture
def read_only_dir(tmp_path: Path, make_read_only: Callable[[Path], Path]) -> Path:
    """An empty folder nobody can write to (see ``make_read_only``)."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    return make_read_only(folder)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> str:
    """HTTPS through a closed local port: a probe of any download host fails at once and nothing leaves the machine.

    Returns the proxy URL set as ``https_proxy``.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setenv("https_proxy", proxy)
    return proxy
