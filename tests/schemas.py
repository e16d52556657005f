"""Every JSON output the suite sees is validated against its published schema (docs/schemas).

``cli()`` validates the stdout of every ``--format json`` run of plan, apply, rollback and
history; tests that read such output another way call ``checked`` on it.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

SCHEMAS = Path(__file__).resolve().parent.parent / "docs" / "schemas"
COUNT = {"validated": 0}


@cache
def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def validate(data: dict[str, Any]) -> dict[str, Any]:
    """Validate a wg-tuner JSON document by its own ``schema`` field; return it."""
    name = str(data.get("schema", "")).removeprefix("wg-tuner/")
    assert (SCHEMAS / f"{name}.schema.json").exists(), f"no published schema for {name!r}"
    errors = sorted(validator(name).iter_errors(data), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])
    COUNT["validated"] += 1
    return data


def checked(text: str) -> dict[str, Any]:
    """Parse and validate one JSON output."""
    data = json.loads(text)
    assert isinstance(data, dict)
    return validate(data)


VALIDATED_COMMANDS = ("plan", "apply", "rollback", "history")


def maybe_validate(args: list[str], stdout: str) -> None:
    """What ``cli()`` calls: validate when a validated command printed JSON."""
    if "--format" not in args or "json" not in args:
        return
    if not any(a in VALIDATED_COMMANDS for a in args[:1]) or not stdout.strip().startswith("{"):
        return
    checked(stdout)


def validate_items(definition: str, items: list[Any], schema: str = "apply") -> None:
    """Validate list items against one ``$defs`` entry (the Ansible module's returns)."""
    base = json.loads((SCHEMAS / f"{schema}.schema.json").read_text())
    wrapper = {"$defs": base["$defs"], "$ref": f"#/$defs/{definition}"}
    check = Draft202012Validator(wrapper)
    for item in items:
        errors = list(check.iter_errors(item))
        assert not errors, f"{definition}: {errors[0].message}"
    COUNT["validated"] += 1
