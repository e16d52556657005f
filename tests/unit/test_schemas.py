"""The published JSON Schemas: generated from the kinds, and able to refuse bad output."""

from __future__ import annotations

import copy
import json

import pytest
from jsonschema import ValidationError

from tests.golden.test_golden import HERE
from tests.schemas import SCHEMAS, validate, validator
from tuner.exporters import schemas


def test_published_schemas_are_the_generated_ones() -> None:
    for name, schema in schemas.build().items():
        path = SCHEMAS / f"{name}.schema.json"
        assert path.read_text() == schemas.render(schema), (
            f"{path} is stale: python -m tuner.exporters.schemas docs/schemas"
        )


def plan_with_a_change() -> dict[str, object]:
    data = json.loads((HERE / "mtu-blackhole-fires" / "expected.json").read_text())
    assert data["changes"][0]["kind"] == "mtu"
    return data


def test_a_typed_mtu_validates() -> None:
    data = plan_with_a_change()
    assert isinstance(data["changes"][0]["before"], int)  # type: ignore[index]
    validate(data)


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        (("changes", 0, "after"), "1340"),  # an MTU as text
        (("changes", 0, "kind"), "reboot"),  # no such kind
        (("changes", 0, "verdict", "decision"), "maybe"),
        (("schemaVersion",), 1),
    ],
)
def test_the_schema_refuses_an_untyped_or_unknown_value(
    path: tuple[object, ...], bad: object
) -> None:
    data = copy.deepcopy(plan_with_a_change())
    node: object = data
    for key in path[:-1]:
        node = node[key]  # type: ignore[index]
    node[path[-1]] = bad  # type: ignore[index]
    with pytest.raises(AssertionError):
        validate(data)


def test_a_cpu_list_must_be_in_the_kernels_list_form() -> None:
    check = validator("rollback")
    outcome = {
        "id": "c-1",
        "policy": "p",
        "kind": "irq_affinity",
        "target": "eth0/rx-0",
        "before": "0-3",
        "after": "00000000,0000000f",
        "status": "reverted",
        "reason": None,
    }
    doc = {"schema": "wg-tuner/rollback", "schemaVersion": 2, "rolled_back": [outcome]}
    with pytest.raises(ValidationError):
        check.validate(doc)
    outcome["after"] = "0-1,3"
    check.validate(doc)
