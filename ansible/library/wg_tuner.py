#!/usr/bin/python
"""Ansible module wg_tuner: run wg-tuner once on a host (plan in check mode, else apply)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wg_tuner
short_description: Tune a WireGuard host with wg-tuner (plan in check mode, apply otherwise)
description:
  - Runs C(wg-tuner plan --format json) in check mode and C(wg-tuner apply --format json)
    otherwise, so Ansible and people see the same plan. C(--diff) shows every change as
    before and after (for example an MTU going from 1420 to 1340).
  - Changes are verified on the host and rolled back automatically when health gets
    worse. A rolled-back change B(fails the task), so a canary wave with
    C(max_fail_percentage: 0) stops at the first bad host. A failed revert fails the task
    too (wg-tuner freezes further changes on that host).
  - Acts on the network namespace it runs in.
version_added: "0.1.0"
author:
  - wg-tuner developers
options:
  executable:
    description: Path or name of the wg-tuner command.
    type: str
    default: wg-tuner
  policies:
    description: Policy directory (default is wg-tuner's own default).
    type: path
  state_dir:
    description: State directory with the journal (default is wg-tuner's own default).
    type: path
  verify_window:
    description: Verification window in seconds (default is each policy's).
    type: float
  settle:
    description: Seconds to wait after a change before checking (default is each policy's).
    type: float
  grace:
    description: Seconds a health check must fail in a row to fail verification.
    type: float
  mode:
    description:
      - C(apply) applies in a real run; C(plan) only plans, even without check mode.
    type: str
    choices: [apply, plan]
    default: apply
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
notes:
  - Needs root (CAP_NET_ADMIN) on the target; use C(become).
"""

EXAMPLES = r"""
- name: Show what wg-tuner would change
  wg_tuner:
  check_mode: true
  diff: true

- name: Apply with a short verification window
  wg_tuner:
    verify_window: 20
  become: true
"""

RETURN = r"""
changed:
  description: Whether a change was applied and kept (in check mode, whether one would be).
  returned: always
  type: bool
changes:
  description: Each proposed or applied change with id, policy, kind, target, before, after, status.
  returned: always
  type: list
  elements: dict
rolled_back:
  description: Changes that were applied, failed verification and were reverted.
  returned: always
  type: list
  elements: dict
recovered:
  description: Changes an interrupted earlier run left unverified, reverted at start.
  returned: always
  type: list
  elements: dict
findings:
  description: What the policies found (check mode).
  returned: always
  type: list
  elements: dict
msg:
  description: A one-line summary.
  returned: always
  type: str
"""

import json

from ansible.module_utils.basic import AnsibleModule


def diff_text(side):
    return "".join(f"{key}: {value}\n" for key, value in sorted(side.items()))


def main():
    module = AnsibleModule(
        argument_spec={
            "executable": {"type": "str", "default": "wg-tuner"},
            "policies": {"type": "path"},
            "state_dir": {"type": "path"},
            "verify_window": {"type": "float"},
            "settle": {"type": "float"},
            "grace": {"type": "float"},
            "mode": {"type": "str", "choices": ["apply", "plan"], "default": "apply"},
        },
        supports_check_mode=True,
    )
    p = module.params
    planning = module.check_mode or p["mode"] == "plan"
    argv = [p["executable"], "plan" if planning else "apply", "--format", "json",
            "--log-format", "json"]
    if p["policies"]:
        argv += ["--policies", p["policies"]]
    if p["state_dir"]:
        argv += ["--state-dir", p["state_dir"]]
    if not planning:
        for option in ("verify_window", "settle", "grace"):
            if p[option] is not None:
                argv += ["--" + option.replace("_", "-"), str(p[option])]
    rc, out, err = module.run_command(argv)
    try:
        data = json.loads(out)
    except ValueError:
        module.fail_json(msg=f"wg-tuner exited {rc}: " + (err.strip().splitlines() or ["no output"])[-1],
                         rc=rc, cmd=argv)
    diff = {"before": diff_text(data.get("diff", {}).get("before", {})),
            "after": diff_text(data.get("diff", {}).get("after", {}))}
    result = {
        "changed": bool(data.get("changed")),
        "changes": data.get("changes", []),
        "rolled_back": data.get("rolled_back", []),
        "recovered": data.get("recovered", []),
        "findings": data.get("findings", []),
        "diff": diff,
        "rc": rc,
    }
    if planning:
        admitted = [c for c in result["changes"] if c.get("verdict", {}).get("decision") == "admit"]
        result["msg"] = f"{len(admitted)} change(s) would be applied"
        module.exit_json(**result)
    if rc == 4:
        module.fail_json(msg="a revert failed: wg-tuner froze further changes on this host",
                         **result)
    if result["rolled_back"]:
        module.fail_json(msg=f"{len(result['rolled_back'])} change(s) failed verification "
                         "and were rolled back", **result)
    if rc != 0:
        module.fail_json(msg=f"wg-tuner apply exited {rc}", **result)
    kept = [c for c in result["changes"] if c.get("status") == "verified"]
    result["msg"] = f"{len(kept)} change(s) applied and verified" if kept else "nothing to change"
    module.exit_json(**result)


if __name__ == "__main__":
    main()
