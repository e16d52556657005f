"""The policy loader: shipped files, documented examples, and every kind of bad input."""

from __future__ import annotations

import os
import re
import tracemalloc
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import REPO, cli
from tests.reliability import FigureFn
from tuner.errors import PolicyError
from tuner.model.policy import Scope
from tuner.policy.loader import MAX_FILE_BYTES, load, load_or_raise, load_text, read_policy_file

SHIPPED = REPO / "policies"
GOOD = (SHIPPED / "mtu-blackhole.yaml").read_text()


def issues_of(text: str) -> list[str]:
    return [str(i) for i in load_text(text, "p.yaml")[1]]


def test_shipped_policies_load_with_summary_and_why() -> None:
    policies = load_or_raise([SHIPPED])
    names = {p.name for p in policies}
    assert {
        "nat-keepalive",
        "mtu-blackhole",
        "tcp-mss",
        "udp-socket-default",
        "udp-socket-capped",
        "softirq-hotspot",
        "conntrack-pressure",
        "handshake-stale",
    } <= names
    for p in policies:
        assert p.summary and len(p.why) > 80, p.name
    stale = next(p for p in policies if p.name == "handshake-stale")
    assert stale.action.kind == "alert"
    assert next(p for p in policies if p.name == "nat-keepalive").scope is Scope.PEER


def test_documented_examples_all_load() -> None:
    doc = (REPO / "docs" / "policies.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", doc, re.S)
    assert len(blocks) >= 3
    for block in blocks:
        policies, issues = load_text(block.replace("...", ""), "docs/policies.md")
        assert issues == [] and len(policies) == 1, [str(i) for i in issues]


@pytest.mark.parametrize(
    ("mutation", "line", "message"),
    [
        (("  priority: 60", "  priorty: 60"), 16, "unknown key 'priorty'"),
        (("metric: iface.mtu_deficit", "metric: iface.bogus"), 21, "unknown metric"),
        (('op: ">"', 'op: "=>"'), 22, "unknown comparison"),
        (("kind: mtu", "kind: reboot"), 25, "unknown action kind"),
        (("min: 1280", "min: -5"), 27, "outside"),
        (("settle: 2s", "settle: forever"), 33, "must be a duration"),
    ],
)
def test_errors_point_at_line_and_column(
    mutation: tuple[str, str], line: int, message: str
) -> None:
    text = GOOD.replace(*mutation)
    del line  # derived from the file itself, so editing the shipped policy keeps this true
    row = next(n for n, ln in enumerate(text.splitlines(), 1) if mutation[1] in ln)
    col = text.splitlines()[row - 1].index(mutation[1].split(":")[0].strip()) + 1
    (issue,) = issues_of(text)
    assert issue.startswith(f"p.yaml:{row}:"), issue
    if mutation[1].split(":")[0].strip() in ("priorty",):
        assert issue.startswith(f"p.yaml:{row}:{col}:"), issue
    assert message in issue


def test_every_error_reported_at_once(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        GOOD.replace("priority: 60", "priority: 5000").replace("value: 0", "value: [1]")
    )
    (tmp_path / "b.yaml").write_text("apiVersion: wg-tuner/v2\nkind: Policy\n")
    _, issues = load([tmp_path])
    files = {i.file.rsplit("/", 1)[-1] for i in issues}
    assert files == {"a.yaml", "b.yaml"}
    assert len(issues) >= 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: &x [1]\nb: *x\n", "anchors and aliases"),
        ("!!python/object:os.system {}\n", "tag"),
        ('apiVersion: !!python/name:os.system ""\n', "tag"),
        ("key: [unclosed\n", "YAML syntax"),
        ("- just\n- a list\n", "must be a mapping"),
    ],
)
def test_hostile_yaml_rejected(text: str, message: str, figure: FigureFn) -> None:
    issues = issues_of(text)
    assert issues and message in issues[0]
    figure("Security", f"hostile YAML ({message}) -> rejected with", issues[0].split(": ", 1)[-1])


def test_billion_laughs_rejected_quickly(figure: FigureFn) -> None:
    bomb = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    tracemalloc.start()
    try:
        issues = issues_of(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "anchors and aliases" in issues[0]
    assert peak < 20 * 2**20
    figure("Security", "YAML bomb (9^9 aliases) -> rejected; peak memory", peak / 2**20, "MiB")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('interfaces: ["wg*"]', 'interfaces: ["wg0\\nup"]', "invalid interface glob"),
        ('interfaces: ["wg*"]', 'interfaces: ["-wg0"]', "must not start with '-'"),
        ('interfaces: ["wg*"]', 'interfaces: ["averyveryverylongname0"]', "invalid interface"),
        ("name: mtu-blackhole", "name: -rf", "invalid policy name"),
        ("min: 1280", "min: 99999999999999999999", "outside"),
        (
            "summary: Lower the tunnel MTU to the largest size the path really carries",
            'summary: "Lower\\nsecond line"',
            "line breaks",
        ),
    ],
)
def test_dangerous_values_rejected(old: str, new: str, message: str) -> None:
    text = GOOD.replace("spec:\n", 'spec:\n  selector:\n    interfaces: ["wg*"]\n', 1)
    text = text.replace(old, new)
    issues = issues_of(text)
    assert issues, text
    assert message in " ".join(issues)


def test_sysctl_outside_allowlist_is_an_error() -> None:
    text = (
        (SHIPPED / "conntrack-pressure.yaml")
        .read_text()
        .replace("net.netfilter.nf_conntrack_max", "kernel.core_pattern")
    )
    assert "not on the allowlist" in issues_of(text)[0]


def test_world_writable_and_symlinked_files_refused(tmp_path: Path, figure: FigureFn) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD)
    bad.chmod(0o666)
    with pytest.raises(PolicyError, match="writable by group or others"):
        load_or_raise([bad])
    link = tmp_path / "link.yaml"
    link.symlink_to(SHIPPED / "tcp-mss.yaml")
    _, issues = load([link])
    assert issues and "cannot open" in str(issues[0])
    figure("Security", "world-writable or symlinked policy file -> policies loaded from it", 0)


def test_huge_file_refused(tmp_path: Path, figure: FigureFn) -> None:
    big = tmp_path / "big.yaml"
    with big.open("w") as fh:
        fh.write("# " + "x" * MAX_FILE_BYTES + "\n")
        fh.truncate(64 * 2**20)  # 64 MiB: memory must not follow the file's size
    tracemalloc.start()
    try:
        _, issues = load([big])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "larger than" in str(issues[0])
    assert peak < 2 * MAX_FILE_BYTES
    figure("Security", "64 MiB policy file -> rejected; peak memory", peak / 2**20, "MiB")


def test_duplicate_names_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    _, issues = load([tmp_path])
    assert any("duplicate policy name" in str(i) for i in issues)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_fuzzed_text_never_crashes(text: str) -> None:
    load_text(text, "fuzz.yaml")  # returns issues; any exception is a bug


YAMLISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "apiVersion",
                    "kind",
                    "metadata",
                    "spec",
                    "name",
                    "scope",
                    "when",
                    "all",
                    "metric",
                    "op",
                    "value",
                    "action",
                    "set",
                    "why",
                    "summary",
                    "x",
                ]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(YAMLISH)
def test_fuzzed_structures_never_crash(doc: object) -> None:
    load_text(yaml.safe_dump(doc), "fuzz.yaml")


def test_validate_cli(tmp_path: Path) -> None:
    ok = cli(["validate", str(SHIPPED)])
    assert ok.returncode == 0 and "policies valid" in ok.stdout
    (tmp_path / "x.yaml").write_text(GOOD.replace("priority: 60", "prio: 60"))
    bad = cli(["validate", str(tmp_path)])
    assert bad.returncode == 1
    assert re.search(r"x\.yaml:\d+:\d+: unknown key 'prio'.*hint", bad.stdout)


def test_plan_refuses_a_bad_policy_dir_with_the_same_errors(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text(GOOD.replace("priority: 60", "prio: 60"))
    proc = cli(["plan", "--policies", str(tmp_path)])
    assert proc.returncode == 1
    assert "x.yaml:" in proc.stderr and "unknown key 'prio'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_zero_cooldown_means_zero_and_zero_window_is_refused() -> None:
    (policy,) = load_text(GOOD.replace("cooldown: 15m", "cooldown: 0s"), "p.yaml")[0]
    assert policy.guards.cooldown == 0.0
    text = GOOD.replace("window: 20s", "window: 0s")
    (issue,) = issues_of(text)
    row = next(n for n, ln in enumerate(text.splitlines(), 1) if "window: 0s" in ln)
    assert issue.startswith(f"p.yaml:{row}:") and "verifies nothing" in issue


@pytest.mark.parametrize(("old", "new"), [("tunnel_passes_tcp", "tunnel_reachable")])
def test_a_renamed_health_check_is_an_error_naming_the_new_name(old: str, new: str) -> None:
    text = GOOD.replace("[tunnel_probe_passes, handshakes_fresh]", f"[{old}]")
    (issue,) = issues_of(text)
    row = next(n for n, ln in enumerate(text.splitlines(), 1) if old in ln)
    assert issue.startswith(f"p.yaml:{row}:") and f"it is {new!r} now" in issue


def test_an_unknown_health_check_is_an_error_never_a_pass() -> None:
    (issue,) = issues_of(GOOD.replace("handshakes_fresh]", "peer_is_happy]"))
    assert "unknown health check 'peer_is_happy'" in issue


def test_kind_declarations_drive_the_loader() -> None:
    base = GOOD.replace("from: iface.min_tunnel_mtu", "set: 1300")
    assert issues_of(base) == []
    (issue,) = issues_of(base.replace("set: 1300", "set: 1200"))
    assert "mtu value: 1200 is outside 1280..65535" in issue
    (issue,) = issues_of(
        base.replace("kind: mtu", "kind: irq_affinity")
        .replace("1300", "all")
        .replace("    min: 1280\n", "    persist: true\n")
    )
    assert "irq_affinity changes cannot be persisted" in issue
    (issue,) = issues_of(base.replace("kind: mtu", "kind: keepalive").replace("1300", "25"))
    assert "keepalive actions need scope: peer" in issue
    (issue,) = issues_of(base.replace("kind: mtu", "kind: sysctl"))
    assert "a sysctl action needs 'key'" in issue


def test_policies_doc_lists_every_health_check() -> None:
    from tuner.model.checks import POLICY_CHECKS

    doc = (REPO / "docs" / "policies.md").read_text()
    for name in POLICY_CHECKS:
        assert f"| `{name}` |" in doc, name


CONNTRACK_TEXT = (REPO / "policies" / "conntrack-pressure.yaml").read_text()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x:\n  y: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than"),
        (CONNTRACK_TEXT.replace("priority: 50", "priority: " + "9" * 5000), "longer than"),
    ],
    ids=["deep-nesting", "5000-digit-integer"],
)
def test_parser_limits_are_policy_errors_with_a_location(text: str, message: str) -> None:
    _, issues = load_text(text, "limits.yaml")
    hit = [i for i in issues if message in i.message]
    assert hit, [str(i) for i in issues]
    line = next(n for n, t in enumerate(text.splitlines(), 1) if "[[" in t or "9999" in t)
    assert hit[0].file == "limits.yaml" and hit[0].line == line


@pytest.mark.parametrize("mode", [0o664, 0o646])
def test_a_policy_file_writable_by_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: x\n")
    path.chmod(mode)
    with pytest.raises(PolicyError, match="writable by group or others"):
        read_policy_file(path)


def test_a_policy_directory_writable_by_others_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "policies"
    directory.mkdir()
    directory.chmod(0o777)
    _, issues = load([directory])
    assert issues and "directory is writable by group or others" in issues[0].message


def test_a_fifo_is_refused_at_once_instead_of_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "p.yaml"
    os.mkfifo(fifo)
    with pytest.raises(PolicyError, match="not a regular file"):
        read_policy_file(fifo)  # opening a FIFO for reading blocked until a writer came
