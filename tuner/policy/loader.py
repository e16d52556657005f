"""Load and validate policy files without ever executing anything.

YAML is parsed to events first (so aliases — the raw material of "billion laughs"
bombs — are refused before anything is built, and the event count is bounded), then
composed into nodes with safe tags only, and each node is checked against the schema
by hand so every error carries its file, line and column. Unknown keys are errors.
Values that could reach a command or socket (names, keys, globs, values) must not
contain newlines or NUL, start with '-', or be absurdly large. World-writable files
are refused. All errors of all files are collected, then raised together.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tuner.core.metrics import CATALOGUE, SCOPE_RANK
from tuner.errors import PolicyError, PolicyIssue
from tuner.model.checks import POLICY_CHECKS, RENAMED
from tuner.model.kinds import ALERT, KINDS, BadValue
from tuner.model.policy import (
    Action,
    Condition,
    Guards,
    OnDrift,
    Op,
    Policy,
    Scope,
    Selector,
    Verify,
)

API_VERSION = "wg-tuner/v1"
MAX_FILE_BYTES = 256 * 1024
MAX_EVENTS = 20_000
MAX_DEPTH = 32
MAX_SCALAR = 4096
"""A number, boolean or null longer than this is not one (a 5,000-digit integer)."""
MAX_INT = 2**31 - 1
NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
GLOB_RE = re.compile(r"[A-Za-z0-9_.@+*?\[\]!-]{1,15}")
DURATION_RE = re.compile(r"([0-9]{1,7})(s|m|h|d)?")
WINDOW_RE = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])")
SAFE_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}


class Issues:
    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[PolicyIssue] = []

    def add(self, node: yaml.Node | None, message: str, hint: str = "") -> None:
        mark = node.start_mark if node is not None else None
        line = mark.line + 1 if mark else 1
        col = mark.column + 1 if mark else 1
        self.items.append(PolicyIssue(self.file, line, col, message, hint))


@dataclass
class Ctx:
    issues: Issues

    # -- primitives -------------------------------------------------------------------
    def mapping(
        self, node: yaml.Node, allowed: set[str], required: Collection[str] = (), what: str = ""
    ) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            self.issues.add(node, f"{what or 'this'} must be a mapping")
            return {}
        out: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                self.issues.add(key_node, "keys must be plain strings")
                continue
            if key in out:
                self.issues.add(key_node, f"duplicate key {key!r}")
            elif key not in allowed:
                close = [k for k in sorted(allowed) if k.lower() == key.lower()]
                self.issues.add(
                    key_node,
                    f"unknown key {key!r} in {what or 'mapping'}",
                    f"did you mean {close[0]!r}?"
                    if close
                    else "allowed: " + ", ".join(sorted(allowed)),
                )
            else:
                out[key] = value_node
        for key in sorted(set(required) - out.keys()):
            self.issues.add(node, f"missing required key {key!r} in {what or 'mapping'}")
        return out

    def scalar(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self.issues.add(node, "expected a single value")
            return None
        if node.tag == "tag:yaml.org,2002:str":
            return node.value
        if len(node.value) > MAX_SCALAR:
            self.issues.add(node, f"value is longer than {MAX_SCALAR} characters")
            return None
        try:
            return yaml.safe_load(yaml.serialize(node))
        except (ValueError, OverflowError, yaml.YAMLError):
            self.issues.add(node, "value cannot be read as a number, boolean or null")
            return None

    def text(self, node: yaml.Node, *, multiline: bool = False, max_len: int = 4000) -> str | None:
        value = self.scalar(node)
        if not isinstance(value, str):
            self.issues.add(node, "expected text")
            return None
        if "\0" in value or (not multiline and ("\n" in value or "\r" in value)):
            self.issues.add(
                node, "text must not contain NUL" + ("" if multiline else " or line breaks")
            )
            return None
        if len(value) > max_len:
            self.issues.add(node, f"text longer than {max_len} characters")
            return None
        return value

    def token(
        self, node: yaml.Node, pattern: re.Pattern[str], what: str, hint: str = ""
    ) -> str | None:
        value = self.scalar(node)
        if not isinstance(value, str) or not pattern.fullmatch(value):
            shown = repr(value)[:40]
            self.issues.add(node, f"invalid {what}: {shown}", hint)
            return None
        if value.startswith("-"):
            self.issues.add(node, f"{what} must not start with '-'")
            return None
        return value

    def integer(self, node: yaml.Node, low: int, high: int, what: str) -> int | None:
        value = self.scalar(node)
        if isinstance(value, bool) or not isinstance(value, int):
            self.issues.add(node, f"{what} must be an integer")
            return None
        if not low <= value <= high:
            self.issues.add(node, f"{what} {value} is outside {low}..{high}")
            return None
        return value

    def number(self, node: yaml.Node, low: float, high: float, what: str) -> float | None:
        value = self.scalar(node)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.issues.add(node, f"{what} must be a number")
            return None
        if not low <= value <= high:
            self.issues.add(node, f"{what} {value} is outside {low:g}..{high:g}")
            return None
        return float(value)

    def boolean(self, node: yaml.Node, what: str) -> bool | None:
        value = self.scalar(node)
        if not isinstance(value, bool):
            self.issues.add(node, f"{what} must be true or false")
            return None
        return value

    def duration(self, node: yaml.Node, what: str) -> float | None:
        value = self.scalar(node)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        match = DURATION_RE.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            self.issues.add(node, f"{what} must be a duration", "like 30s, 5m, 2h or 1d")
            return None
        seconds = (
            int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2) or "s"]
        )
        if seconds > 7 * 86400:
            self.issues.add(node, f"{what} longer than 7 days")
            return None
        return float(seconds)

    def sequence(self, node: yaml.Node, what: str, max_items: int = 64) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            self.issues.add(node, f"{what} must be a list")
            return []
        if len(node.value) > max_items:
            self.issues.add(node, f"{what} has more than {max_items} items")
            return []
        return list(node.value)


def _check_events(text: str, issues: Issues) -> bool:
    depth = 0
    for count, event in enumerate(yaml.parse(text, Loader=yaml.SafeLoader), start=1):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                issues.add(_Marked(event), f"nested deeper than {MAX_DEPTH} levels")
                return False
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            issues.add(_Marked(event), "YAML anchors and aliases are not allowed")
            return False
        tag = getattr(event, "tag", None)
        if tag and tag not in SAFE_TAGS and tag != "!":
            issues.add(_Marked(event), f"YAML tag {tag} is not allowed")
            return False
        if count > MAX_EVENTS:
            issues.add(_Marked(event), "policy file is too complex")
            return False
    return True


class _Marked(yaml.Node):
    """A node-shaped carrier of an event's position, for error reporting."""

    def __init__(self, event: yaml.Event) -> None:
        marks: Any = (event.start_mark, event.end_mark)
        super().__init__("", None, *marks)


def _metric(ctx: Ctx, node: yaml.Node, scope: Scope) -> str | None:
    name = ctx.token(node, re.compile(r"[a-z][a-z0-9_.]{0,63}"), "metric")
    if name is None:
        return None
    metric = CATALOGUE.get(name)
    if metric is None:
        ctx.issues.add(node, f"unknown metric {name!r}", "see docs/policies.md for the catalogue")
        return None
    if SCOPE_RANK[metric.scope] > SCOPE_RANK[scope.value]:
        ctx.issues.add(
            node, f"metric {name} needs a {metric.scope}, but the policy's scope is {scope.value}"
        )
        return None
    return name


def _conditions(ctx: Ctx, node: yaml.Node, scope: Scope) -> tuple[tuple[Condition, ...], bool]:
    when = ctx.mapping(node, {"all", "any"}, what="when")
    if len(when) != 1:
        ctx.issues.add(node, "when takes exactly one of 'all' or 'any'")
        return (), True
    ((mode, items),) = when.items()
    out = []
    for item in ctx.sequence(items, f"when.{mode}", 16):
        fields = ctx.mapping(
            item, {"metric", "op", "value", "for", "cycles"}, {"metric", "op", "value"}, "condition"
        )
        if not {"metric", "op", "value"} <= fields.keys():
            continue
        metric = _metric(ctx, fields["metric"], scope)
        op_text = ctx.scalar(fields["op"])
        op = next((o for o in Op if o.value == op_text), None)
        if op is None:
            ctx.issues.add(
                fields["op"], f"unknown comparison {op_text!r}", "one of > >= < <= == !="
            )
        threshold = ctx.number(fields["value"], -1e12, 1e12, "threshold")
        hold = ctx.duration(fields["for"], "for") if "for" in fields else 0.0
        cycles = ctx.integer(fields["cycles"], 1, 1000, "cycles") if "cycles" in fields else 1
        if None not in (metric, op, threshold, hold, cycles):
            out.append(Condition(metric, op, threshold, hold, cycles))  # type: ignore[arg-type]
    if not out and not ctx.issues.items:
        ctx.issues.add(node, "a policy needs at least one condition")
    return tuple(out), mode == "all"


def _selector(ctx: Ctx, node: yaml.Node | None) -> Selector:
    if node is None:
        return Selector()
    fields = ctx.mapping(node, {"interfaces", "peers", "allowedIPs"}, what="selector")
    globs = (
        tuple(
            g
            for n in ctx.sequence(fields["interfaces"], "interfaces")
            if (
                g := ctx.token(
                    n, GLOB_RE, "interface glob", "1-15 of A-Z a-z 0-9 _ . @ + * ? [ ] -"
                )
            )
        )
        if "interfaces" in fields
        else ("*",)
    )
    peers = []
    for n in ctx.sequence(fields["peers"], "peers", 4096) if "peers" in fields else []:
        key = ctx.token(
            n,
            re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]="),
            "public key",
            "a base64 WireGuard public key",
        )
        if key:
            peers.append(key)
    cidrs = []
    for n in (
        ctx.sequence(fields["allowedIPs"], "allowedIPs", 256) if "allowedIPs" in fields else []
    ):
        value = ctx.scalar(n)
        try:
            cidrs.append(str(ipaddress.ip_network(str(value), strict=False)))
        except ValueError:
            ctx.issues.add(n, f"invalid CIDR {str(value)[:40]!r}")
    return Selector(globs, tuple(peers), tuple(cidrs))


def _action(  # noqa: PLR0911 - one early return per kind of mistake, each reported
    ctx: Ctx, node: yaml.Node, scope: Scope
) -> Action | None:
    fields = ctx.mapping(
        node,
        {
            "kind",
            "set",
            "step",
            "factor",
            "from",
            "offset",
            "key",
            "min",
            "max",
            "persist",
            "sticky",
            "why",
        },
        {"kind"},
        "action",
    )
    if "kind" not in fields:
        return None
    name = ctx.scalar(fields["kind"])
    why = (ctx.text(fields["why"], multiline=True) or "") if "why" in fields else ""
    modes = [m for m in ("set", "step", "factor", "from") if m in fields]
    if name == ALERT:
        if modes:
            ctx.issues.add(fields[modes[0]], "an alert changes nothing: no value allowed")
        return Action(ALERT, why=why)
    kind = KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        ctx.issues.add(
            fields["kind"],
            f"unknown action kind {str(name)[:40]!r}",
            "one of " + ", ".join([*KINDS, ALERT]),
        )
        return None
    if len(modes) != 1:
        ctx.issues.add(node, "an action takes exactly one of set, step, factor or from")
        return None
    if kind.policy_scope and scope.value != kind.policy_scope:
        ctx.issues.add(fields["kind"], f"{kind.name} actions need scope: {kind.policy_scope}")
    key = None
    if kind.needs_key:
        if "key" not in fields:
            ctx.issues.add(node, f"a {kind.name} action needs 'key'")
            return None
        key = ctx.scalar(fields["key"])
        if key not in kind.keys:
            ctx.issues.add(
                fields["key"],
                f"{kind.name} {str(key)[:60]!r} is not on the allowlist",
                "see docs/actuators.md",
            )
            return None
    elif "key" in fields:
        ctx.issues.add(fields["key"], f"'key' does not apply to {kind.name} actions")
    persist = bool(ctx.boolean(fields["persist"], "persist")) if "persist" in fields else False
    if persist and not kind.persists:
        ctx.issues.add(fields["persist"], f"{kind.name} changes cannot be persisted")
        return None
    sticky = bool(ctx.boolean(fields["sticky"], "sticky")) if "sticky" in fields else False
    value: int | str | None = None
    step = None
    factor = False
    derive = None
    mode = modes[0]
    if mode == "set":
        try:
            value = kind.value.parse(ctx.scalar(fields["set"]), kind.bounds)
        except BadValue as exc:
            ctx.issues.add(fields["set"], f"{kind.name} value: {exc}", exc.hint)
            return None
    elif mode == "step":
        step = ctx.number(fields["step"], -1e9, 1e9, "step")
    elif mode == "factor":
        step = ctx.number(fields["factor"], 0.1, 16, "factor")
        factor = True
    else:
        derive = _metric(ctx, fields["from"], scope)
    bound = {
        k: ctx.integer(fields[k], 0, 2**40, k) if k in fields else None
        for k in ("min", "max", "offset")
    }
    return Action(
        kind=kind.name,
        value=value,
        step=step,
        factor=factor,
        derive=derive,
        offset=_offset(ctx, fields) if "offset" in fields else 0,
        key=key,
        minimum=bound["min"],
        maximum=bound["max"],
        persist=persist,
        sticky=sticky,
        why=why,
    )


def _offset(ctx: Ctx, fields: dict[str, yaml.Node]) -> int:
    return ctx.integer(fields["offset"], -10000, 10000, "offset") or 0


def _guards(ctx: Ctx, node: yaml.Node | None) -> Guards:
    if node is None:
        return Guards()
    f = ctx.mapping(
        node,
        {"maxStep", "cooldown", "ratePerHour", "maxUnverified", "windows", "onDrift"},
        what="guards",
    )
    on_drift = OnDrift.HOLD
    if "onDrift" in f:
        raw = ctx.scalar(f["onDrift"])
        if raw in {d.value for d in OnDrift}:
            on_drift = OnDrift(raw)
        else:
            ctx.issues.add(f["onDrift"], f"invalid onDrift {str(raw)[:20]!r}", "hold or reassert")
    windows = []
    for n in ctx.sequence(f["windows"], "windows", 24) if "windows" in f else []:
        m = WINDOW_RE.fullmatch(str(ctx.scalar(n)))
        if m is None:
            ctx.issues.add(n, "invalid maintenance window", "like 02:00-04:00 (UTC)")
            continue
        a, b, c, d = (int(x) for x in m.groups())
        windows.append((a * 60 + b, c * 60 + d))
    defaults = Guards()
    # A value given and invalid is an issue (nothing loads); zero means zero.
    cooldown = ctx.duration(f["cooldown"], "cooldown") if "cooldown" in f else None
    rate = ctx.integer(f["ratePerHour"], 1, 3600, "ratePerHour") if "ratePerHour" in f else None
    unverified = (
        ctx.integer(f["maxUnverified"], 1, 100, "maxUnverified") if "maxUnverified" in f else None
    )
    return Guards(
        max_step=ctx.integer(f["maxStep"], 1, MAX_INT, "maxStep") if "maxStep" in f else None,
        cooldown=defaults.cooldown if cooldown is None else cooldown,
        rate_per_hour=defaults.rate_per_hour if rate is None else rate,
        max_unverified=defaults.max_unverified if unverified is None else unverified,
        windows=tuple(windows),
        on_drift=on_drift,
    )


def _verify(ctx: Ctx, node: yaml.Node | None) -> Verify:
    if node is None:
        return Verify()
    f = ctx.mapping(node, {"settle", "window", "health"}, what="verify")
    health = []
    for n in ctx.sequence(f["health"], "health", 16) if "health" in f else []:
        name = ctx.scalar(n)
        if isinstance(name, str) and name in RENAMED:
            ctx.issues.add(
                n,
                f"health check {name!r} was renamed: it is {RENAMED[name]!r} now",
                POLICY_CHECKS[RENAMED[name]],
            )
        elif name not in POLICY_CHECKS:
            ctx.issues.add(
                n,
                f"unknown health check {str(name)[:40]!r}",
                "one of " + ", ".join(sorted(POLICY_CHECKS)),
            )
        else:
            health.append(str(name))
    d = Verify()
    settle = ctx.duration(f["settle"], "settle") if "settle" in f else d.settle
    window = ctx.duration(f["window"], "window") if "window" in f else d.window
    if window == 0:
        ctx.issues.add(
            f["window"], "a verification window of 0s verifies nothing", "at least 1s, like 30s"
        )
    return Verify(settle=settle or 0.0, window=window or d.window, health=tuple(health))


def _policy(ctx: Ctx, root: yaml.Node, source: str) -> Policy | None:
    top = ctx.mapping(
        root,
        {"apiVersion", "kind", "metadata", "spec"},
        {"apiVersion", "kind", "metadata", "spec"},
        "policy",
    )
    if len(top) < 4:
        return None
    if ctx.scalar(top["apiVersion"]) != API_VERSION:
        ctx.issues.add(top["apiVersion"], "unsupported apiVersion", f"use {API_VERSION}")
    if ctx.scalar(top["kind"]) != "Policy":
        ctx.issues.add(top["kind"], "kind must be Policy")
    meta = ctx.mapping(
        top["metadata"], {"name", "summary", "why"}, {"name", "summary", "why"}, "metadata"
    )
    spec = ctx.mapping(
        top["spec"],
        {"scope", "priority", "selector", "when", "action", "guards", "verify"},
        {"scope", "when", "action"},
        "spec",
    )
    name = (
        ctx.token(meta["name"], NAME_RE, "policy name", "lowercase letters, digits and '-'")
        if "name" in meta
        else None
    )
    summary = ctx.text(meta["summary"], max_len=200) if "summary" in meta else None
    why = ctx.text(meta["why"], multiline=True) if "why" in meta else None
    scope = None
    if "scope" in spec:
        raw = ctx.scalar(spec["scope"])
        scope = next((s for s in Scope if s.value == raw), None)
        if scope is None:
            ctx.issues.add(spec["scope"], f"unknown scope {raw!r}", "peer, interface or host")
    if scope is None or "when" not in spec or "action" not in spec:
        return None
    conditions, match_all = _conditions(ctx, spec["when"], scope)
    action = _action(ctx, spec["action"], scope)
    priority = ctx.integer(spec["priority"], 0, 1000, "priority") if "priority" in spec else 50
    selector = _selector(ctx, spec.get("selector"))
    guards = _guards(ctx, spec.get("guards"))
    verify = _verify(ctx, spec.get("verify"))
    if name is None or summary is None or why is None or action is None or priority is None:
        return None
    if not conditions:
        return None
    return Policy(
        name=name,
        summary=summary,
        why=why.strip(),
        scope=scope,
        selector=selector,
        conditions=conditions,
        match_all=match_all,
        action=action,
        priority=priority,
        guards=guards,
        verify=verify,
        source=f"{source}:{root.start_mark.line + 1}",
    )


def load_text(text: str, source: str) -> tuple[list[Policy], list[PolicyIssue]]:
    issues = Issues(source)
    if "\0" in text:
        issues.add(None, "file contains NUL bytes")
        return [], issues.items
    try:
        if not _check_events(text, issues):
            return [], issues.items
        roots = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        issues.items.append(
            PolicyIssue(
                source,
                (mark.line + 1) if mark else 1,
                (mark.column + 1) if mark else 1,
                f"YAML syntax: {exc.problem}",
            )
        )
        return [], issues.items
    except yaml.YAMLError as exc:
        issues.add(None, f"YAML error: {str(exc)[:200]}")
        return [], issues.items
    except (RecursionError, ValueError, OverflowError, MemoryError) as exc:
        issues.add(None, f"policy file cannot be parsed ({type(exc).__name__})")
        return [], issues.items
    ctx = Ctx(issues)
    policies = [p for root in roots if root is not None and (p := _policy(ctx, root, source))]
    return policies, issues.items


def read_policy_file(path: Path) -> str:
    """The file's text, refusing what must not be trusted. Raises PolicyError."""
    try:
        # O_NONBLOCK: a FIFO is refused below instead of blocking the open.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise PolicyError([PolicyIssue(str(path), 1, 1, f"cannot open: {exc.strerror}")]) from exc
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise PolicyError([PolicyIssue(str(path), 1, 1, "not a regular file")])
        problem = untrusted(info)
        if problem:
            raise PolicyError(
                [PolicyIssue(str(path), 1, 1, f"file is {problem}: refused", _fix(path, info))]
            )
        data = fh.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise PolicyError(
            [PolicyIssue(str(path), 1, 1, f"file is larger than {MAX_FILE_BYTES // 1024} KiB")]
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError([PolicyIssue(str(path), 1, 1, "file is not UTF-8")]) from exc


def untrusted(info: os.stat_result) -> str | None:
    """Why a policy file or directory with this stat is not trusted: a policy decides
    what root changes, so only root (or wg-tuner's own user) may be able to write it."""
    if info.st_uid not in (0, os.geteuid()):
        return f"owned by uid {info.st_uid}"
    if info.st_mode & 0o022:
        return "writable by group or others"
    return None


def _fix(path: Path, info: os.stat_result) -> str:
    return f"chown root {path}" if info.st_uid not in (0, os.geteuid()) else f"chmod go-w {path}"


def policy_files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            info = os.stat(path)
            problem = untrusted(info)
            if problem:
                raise PolicyError(
                    [
                        PolicyIssue(
                            str(path), 1, 1, f"directory is {problem}: refused", _fix(path, info)
                        )
                    ]
                )
            out += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        else:
            out.append(path)
    return out


def load(paths: list[Path]) -> tuple[list[Policy], list[PolicyIssue]]:
    """Every policy in the files and directories given, and every issue found."""
    policies: list[Policy] = []
    issues: list[PolicyIssue] = []
    try:
        files = policy_files(paths)
    except PolicyError as exc:
        return [], list(exc.issues)
    for path in files:
        try:
            text = read_policy_file(path)
        except PolicyError as exc:
            issues += exc.issues
            continue
        found, problems = load_text(text, str(path))
        policies += found
        issues += problems
    seen: dict[str, Policy] = {}
    for policy in policies:
        if policy.name in seen:
            file, _, line = policy.source.rpartition(":")
            issues.append(
                PolicyIssue(
                    file,
                    int(line),
                    1,
                    f"duplicate policy name {policy.name!r}",
                    f"also defined at {seen[policy.name].source}",
                )
            )
        seen[policy.name] = policy
    return policies, issues


def load_or_raise(paths: list[Path]) -> list[Policy]:
    policies, issues = load(paths)
    if issues:
        raise PolicyError(issues)
    return policies


Loader = Callable[[list[Path]], list[Policy]]
