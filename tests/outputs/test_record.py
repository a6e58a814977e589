"""The run record: summary.json files written before it existed load, keep every key on a
round trip, and a record round-trips through its JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raylanczos.outputs.record import (
    SCHEMA_VERSION,
    PartsRecord,
    SpectrumRecord,
    record_from_json,
)

DATA = Path(__file__).parents[1] / "data"


def load(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def test_a_summary_written_before_the_record_loads_with_every_fact():
    old = load("summary-v1.json")
    record = record_from_json(old)
    assert isinstance(record, SpectrumRecord)
    assert record.config.num_params == 2410 and record.config.order == 90 and record.config.draws == 10
    assert record.statistics.lambda_max == old["lambda_max"] and record.draws.steps_completed == [90] * 10
    assert record.run.layout.reduce == "node" and record.run.layout.node_groups == [[0, 1]]
    assert record.density.sigma2 == old["density"]["sigma2"] and record.part is None


@pytest.mark.parametrize("name", ["summary-v1.json", "summary-v1-blocks.json"])
def test_rewriting_an_old_summary_keeps_its_keys_and_values(name):
    """Users' scripts read these keys: the record adds keys, it never renames or drops one."""
    old = load(name)
    new = record_from_json(old).to_json()
    assert new["schema_version"] == SCHEMA_VERSION
    for key, value in old.items():
        assert new[key] == value, key


def test_a_blocks_top_level_is_a_parts_record():
    record = record_from_json(load("summary-v1-blocks.json"))
    assert isinstance(record, PartsRecord) and record.sweep is None
    assert record.parts == {"0": "blocks/0", "1": "blocks/1"}
    assert [(row.part, row.dim) for row in record.part_statistics] == [("0", 260), ("1", 50)]
    assert record.config.blocks == [{"name": "0", "pattern": "0", "dim": 260}, {"name": "1", "pattern": "1", "dim": 50}]


@pytest.mark.parametrize("name", ["summary-v1.json", "summary-v1-blocks.json"])
def test_a_record_round_trips_through_its_json(name):
    written = json.dumps(record_from_json(load(name)).to_json())
    assert json.dumps(record_from_json(json.loads(written)).to_json()) == written


def test_a_summary_that_is_not_an_object_is_refused():
    with pytest.raises(ValueError, match="must hold a JSON object, got list"):
        record_from_json([1, 2])


def test_a_stopping_record_round_trips_as_its_keys():
    """A run drawn until a target width: ``stop_reason`` at the top, its figures in ``stopping``."""
    import dataclasses

    from raylanczos.outputs.record import StoppingRecord

    stopping = StoppingRecord(0.02, False, 16, 16, 0.031, 0.01, "maximum of 16 draws reached; sampling half-width 0.031 > 0.02")
    record = dataclasses.replace(record_from_json(load("summary-v1.json")), stopping=stopping)
    data = json.loads(json.dumps(record.to_json()))
    assert data["stop_reason"] == stopping.reason and data["stopping"]["maximum"] == 16
    assert record_from_json(data).stopping == stopping
    assert record_from_json(load("summary-v1.json")).stopping is None
