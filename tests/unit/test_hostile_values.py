"""Hostile values in every string field of a policy are refused where they are read.

Commands and sockets only ever see values the loader accepted, and the loader accepts
only tokens (interface globs, sysctl keys from an allowlist, base64 keys, CIDRs,
bounded integers): a newline, NUL, ``=``, a leading ``-``, shell syntax or a huge
number never gets past it, and the refusal names file:line:col.
"""

from __future__ import annotations

import json
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.reliability import FigureFn
from tuner.policy.loader import load_text

KEY = "CZZ9R+7zfotIs5Bje0Xl7cqdsJb9IDO6OgKiGoXCTD8="
PEER_POLICY = """apiVersion: wg-tuner/v1
kind: Policy
metadata:
  name: {name}
  summary: s
  why: w
spec:
  scope: peer
  selector:
    interfaces: [{iface}]
    peers: [{peer}]
    allowedIPs: [{cidr}]
  when:
    all:
      - metric: peer.handshake_age
        op: ">"
        value: 1
  action:
    kind: keepalive
    set: {value}
  guards:
    windows: [{window}]
"""
SYSCTL_POLICY = """apiVersion: wg-tuner/v1
kind: Policy
metadata:
  name: ok-name
  summary: s
  why: w
spec:
  scope: host
  when:
    all:
      - metric: conntrack.fill
        op: ">"
        value: 0.9
  action:
    kind: sysctl
    key: {key}
    set: {value}
"""
SAFE = {
    "name": "ok-name",
    "iface": "wg*",
    "peer": KEY,
    "cidr": "10.0.0.0/8",
    "value": "25",
    "window": "02:00-04:00",
}
DANGER = ["\n", "\x00", "=", " ", ";", "$(id)", "`id`", "|", "&", "../", "\r", "\t", "'", '"']
hostile = st.one_of(
    st.tuples(
        st.text("abcwg0", max_size=6), st.sampled_from(DANGER), st.text("xyz1", max_size=6)
    ).map("".join),
    st.text("abcwgx-", min_size=1, max_size=8).map(lambda s: "-" + s),  # looks like an option
    st.sampled_from(["9" * 40, "-1", "1e400", "nan", ".inf", "-.inf", "1.5"]),
    st.text(min_size=200, max_size=400),  # overlong
)
LOCATION = re.compile(r"^p\.yaml:\d+:\d+: ")
seen: dict[str, int] = {}


def scalar(field: str, value: str) -> str:
    """YAML for a value: numbers go in bare (so huge ones are read as numbers)."""
    if field == "value" and re.fullmatch(r"[-+0-9.e_xna]+", value):
        return value
    return json.dumps(value)


def fill(template: str, values: dict[str, str]) -> str:
    return template.format(**{k: scalar(k, v) for k, v in values.items()})


def rejected(text: str) -> list[str]:
    policies, issues = load_text(text, "p.yaml")
    assert policies == [], text
    assert issues, text
    return [str(i) for i in issues]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(SAFE)), hostile)
def test_hostile_values_in_policy_fields_never_load(field: str, value: str) -> None:
    text = PEER_POLICY.format(
        **{**{k: json.dumps(v) for k, v in SAFE.items()}, field: json.dumps(value)}
    )
    for issue in rejected(text):
        assert LOCATION.match(issue), issue
    seen[field] = seen.get(field, 0) + 1


@settings(max_examples=150, deadline=None)
@given(hostile, st.sampled_from(["key", "value"]))
def test_hostile_sysctl_keys_and_values_never_load(value: str, field: str) -> None:
    safe = {"key": "net.netfilter.nf_conntrack_max", "value": "262144"}
    text = fill(SYSCTL_POLICY, {**safe, field: value})
    for issue in rejected(text):
        assert LOCATION.match(issue), issue
    seen[f"sysctl {field}"] = seen.get(f"sysctl {field}", 0) + 1


def test_the_safe_templates_do_load_and_the_count_is_reported(figure: FigureFn) -> None:
    """The hostile tests only prove something if the same policies load when safe."""
    peer = fill(PEER_POLICY, SAFE)
    sysctl = fill(SYSCTL_POLICY, {"key": "net.netfilter.nf_conntrack_max", "value": "262144"})
    for text in (peer, sysctl):
        policies, issues = load_text(text, "p.yaml")
        assert issues == [] and len(policies) == 1, issues
    if sum(seen.values()) < 400:  # run alone (-k): run the properties here
        test_hostile_values_in_policy_fields_never_load()
        test_hostile_sysctl_keys_and_values_never_load()
    total = sum(seen.values())
    assert total >= 400, seen
    figure(
        "Security",
        f"{total} fuzzed hostile values (newline, NUL, '=', leading '-', shell syntax, "
        f"huge numbers, overlong) in {len(seen)} policy fields -> reached a command or socket",
        "0 (every one refused at load, with file:line:col)",
    )
