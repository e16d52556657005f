"""Shared fixtures. Privileged and lab tests never skip: a missing prerequisite fails."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.reliability import Recorder
from tests.schemas import maybe_validate
from tuner.adapters.uapi import UapiClient

REPO = Path(__file__).resolve().parent.parent
WG_TUNER = str(Path(sys.executable).parent / "wg-tuner")
TOOLS = ("ip", "nft", "wg", "wireguard-go", "iperf3", "sysctl", "setpriv")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "privileged" in parts:
            item.add_marker(pytest.mark.privileged)
        if "lab" in parts:
            item.add_marker(pytest.mark.lab)


RECORDER = Recorder()


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Record a measured figure for docs/reliability.md (kept only if the test passes)."""

    def record(section: str, claim: str, value: object, unit: str = "") -> None:
        RECORDER.add(request.node.nodeid, section, claim, value, unit)

    return record


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or (report.when == "setup" and not report.passed):
        RECORDER.outcome(report.nodeid, report.passed)
    elif report.when == "teardown" and not report.passed:
        RECORDER.passed = [f for f in RECORDER.passed if f.test != report.nodeid]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    directory = os.environ.get("WG_TUNER_FIGURES")
    if directory:
        RECORDER.write(Path(directory))


def require_privileges() -> None:
    """Fail (not skip) when the machine cannot run privileged tests: `make test` installs all."""
    problems = []
    if os.geteuid() != 0:
        problems.append("not root")
    problems += [f"{t} missing" for t in TOOLS if shutil.which(t) is None]
    if not Path("/dev/net/tun").exists():
        problems.append("/dev/net/tun missing")
    if problems:
        pytest.fail("privileged test prerequisites: " + ", ".join(problems) + " (run make test)")


def unique(prefix: str = "t") -> str:
    return prefix + secrets.token_hex(3)


def cli(
    args: Sequence[str],
    *,
    netns: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    argv = [WG_TUNER, *args]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=full_env, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{argv} exited {proc.returncode}: {proc.stderr}")
    maybe_validate(list(args), proc.stdout)
    return proc


@pytest.fixture
def netns() -> Iterator[str]:
    """A throwaway namespace holding one veth pair (v0 <-> v1), removed afterwards."""
    require_privileges()
    name = unique("wgtt-")
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(
            ["ip", "-n", name, "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
            check=True,
        )
        for dev in ("lo", "v0", "v1"):
            subprocess.run(["ip", "-n", name, "link", "set", dev, "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def wg_netns(netns: str) -> Iterator[tuple[str, str]]:
    ifname = unique("wgtt")
    env = dict(os.environ, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD="1")
    proc = subprocess.Popen(
        ["ip", "netns", "exec", netns, "wireguard-go", "-f", ifname],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = UapiClient(Path("/var/run/wireguard"))
        deadline = time.monotonic() + 10
        while not client.has_socket(ifname):
            assert time.monotonic() < deadline, "wireguard-go did not start"
            time.sleep(0.05)
        yield netns, ifname
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One real lab (wireguard-go in namespaces) for the lab tests, removed at the end."""
    require_privileges()
    from tuner.lab.lab import Lab

    state = tmp_path_factory.mktemp("labstate")
    instance = Lab(unique("t"), state, impl="userspace")  # the host tests drive its UAPI
    instance.up()
    try:
        yield instance
    finally:
        instance.down()
