"""summary.json has a schema (harness/run/summary.py): the committed JSON Schema is what the
models generate, real runs' summaries validate against it, a summary that does not
validate is still written (raw, with a warning), and the README's summary.json row names
exactly the schema's fields."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import jsonschema
import pandas as pd
import pytest

from harness.core.files import SCHEMA_VERSION
from harness.measure.live.memory import summarize as memory_summary
from harness.measure.metrics.outcomes import summarize
from harness.measure.metrics.resilience import breakdown_ms, overheads, resilience
from harness.run import summary as S
from harness.run import summary_parts as P
from tests.emulation_fakes import record_host_commands
from tests.helpers import REPO, exp_for, harness_cmd, root_only, run_dir, run_pipeline

SCHEMA = json.loads(S.SCHEMA_FILE.read_text())
IDENT = re.compile(r"[a-z_][a-z0-9_]*")
DEGRADE = "faults.actions=[{{at_s:{at},action:link_degrade,target:h1-h2,delay_ms:5,for_s:{f}}}]"


def validate(summary: dict) -> None:
    """Against the committed schema, as any reader of summary.json would."""
    jsonschema.Draft202012Validator(SCHEMA).validate(summary)


# -- the schema is the models' ------------------------------------------------------------

def test_the_committed_schema_is_what_the_models_generate() -> None:
    assert S.SCHEMA_FILE.read_text() == S.schema_text(), \
        "harness/run/summary.schema.json is stale: python -m harness.run.summary"
    assert S.main(["--check"]) == 0


def test_the_schema_is_a_json_schema_of_this_version() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    assert SCHEMA["additionalProperties"] is False
    assert all(p.get("description") for p in SCHEMA["properties"].values())


# -- a whole run without root: emulation only, on the fake backend -------------------------

def fake_run(tmp_path: Path, monkeypatch, extra: dict | None = None) -> tuple[int, dict]:
    from harness.run.phases import Run

    monkeypatch.setenv("HARNESS_STATE_DIR", str(tmp_path / "state"))
    record_host_commands(monkeypatch)
    exp = exp_for("topology=pair", "network.tcp_cc=reno", "run.duration_s=0.3",
                  "backend._target_=tests.emulation_fakes.FakeBackend",
                  "shaper._target_=harness.emulation.shapers.netem.NetemShaper",
                  "+shaper.check=false", DEGRADE.format(at=0.1, f=0.1))
    run = Run(exp, tmp_path / "run")
    run.load.fields.update(extra or {})
    verdict = run.execute()
    return verdict, json.loads((tmp_path / "run" / "summary.json").read_text())


def test_an_emulation_only_run_validates(tmp_path, monkeypatch) -> None:
    verdict, s = fake_run(tmp_path, monkeypatch)
    assert verdict == s["verdict"] == "VALID", s["verdict_reasons"]
    validate(s)
    assert not [w for w in s["warnings"] if w.startswith(S.SCHEMA_WARNING)]
    assert s["technique"] is None and "n_scheduled" not in s and s["timings"]["teardown_s"]


def test_a_summary_that_does_not_validate_is_written_raw_and_says_so(
        tmp_path, monkeypatch, caplog) -> None:
    with caplog.at_level(logging.ERROR, logger="harness"):
        verdict, s = fake_run(tmp_path, monkeypatch, {"n_ok": "7", "bogus": 1})
    assert verdict == "VALID"  # the figures stand; the harness is what is wrong
    assert s["n_ok"] == "7" and s["bogus"] == 1  # nothing lost, nothing coerced
    [w] = [w for w in s["warnings"] if w.startswith(S.SCHEMA_WARNING)]
    assert "n_ok" in w and "bogus" in w
    assert S.SCHEMA_WARNING in caplog.text
    with pytest.raises(jsonschema.ValidationError):
        validate(s)


def test_a_key_two_parts_set_is_reported() -> None:
    fields, issues = S.assemble({"a": 1, "b": 2}, {"c": 3}, {"b": 4})
    assert fields == {"a": 1, "b": 4, "c": 3} and issues == ["b set twice"]
    _, found = S.checked({"schema_version": SCHEMA_VERSION}, issues)
    assert found[0] == "b set twice" and len(found) > 1  # and the missing header fields


@pytest.mark.parametrize("change", [
    {"unknown": 1},                                      # a key nobody declared
    {"n_ok": 1.5},                                       # a float for a count
    {"n_ok": True},                                      # a bool for a count
    {"availability": "0.9"},                             # a string for a number
    {"verdict": "FAILED"},                               # not a verdict of a run
    {"latency_ms": {"p50": 1.0}},                        # missing percentiles
    {"recovery_breakdown_ms": {"detection_ms": 1.0, "warmup_ms": 2.0}},  # unknown phase
    {"schema_version": SCHEMA_VERSION + 1},
])
def test_an_unknown_key_or_a_wrong_type_does_not_validate(tmp_path, monkeypatch,
                                                           change: dict) -> None:
    _, s = fake_run(tmp_path, monkeypatch)
    bad = {**s, **change}
    assert S.problems(bad)
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)


# -- every producer's part validates against its model ------------------------------------

def requests_table() -> pd.DataFrame:
    rows = [(1, 0.0, 0.01, "ok", 1, 1, "emb_acc+emb_gyro"), (2, 0.5, None, "lost", None, 2, None),
            (3, 1.0, 1.5, "late", 0, 1, "emb_acc"), (4, 1.5, 1.51, "ok", 2, 2, "emb_acc")]
    return pd.DataFrame([{
        "request_id": r, "sensor": "s1", "sample_id": r, "scheduled_s": t, "sent_s": t,
        "completed_s": c, "latency_ms": None if c is None else (c - t) * 1000, "status": st,
        "prediction": p, "label": lab, "correct": None if p is None else p == lab,
        "path": None, "degraded": None if c is None else False, "joined": j, "error": None}
        for r, t, c, st, p, lab, j in rows])


def test_each_producer_gives_what_the_model_declares() -> None:
    df = requests_table()
    res = resilience(df, [{"kind": "detect", "t_s": 0.6}], 0.4, 2.0)
    mem = {"a@e1": {"rss_mb": 50.0, "hwm_mb": 61.0, "pss_mb": 30.0, "uss_mb": 20.0,
                    "shared_file_mb": 25.0}}
    phases = {"t_detect": 100.5, "detect_to_spawn_ms": 2.0, "process_start_ms": 100.0}
    fields = {**summarize(df), **res, **memory_summary(mem, mem)[0],
              **overheads(({"e1": 1.0}, {}), ({"e1": 2.5}, {}), 3, 2),
              "recovery_breakdown_ms": breakdown_ms(phases, 100.0, 0.4, res["mttr_ms"]),
              "reconfiguration": {
                  "mode": "repartition", "stage": "middle", "move": "merge_down",
                  "node": "c1", "into": "tail", "cut": {"inputs": ["x"], "outputs": ["y"]},
                  "predicted_ms": 4.2, "decide_ms": 0.3,
                  "candidates": [{"kind": "as_is", "node": "e2", "fits": False,
                                  "predicted_ms": 3.0, "need_mb": 90.0, "free_mb": 10.0}]}}
    assert "accuracy_by_joined" in fields and fields["mttr_source"] == "requests"
    part = S.Summary.model_fields
    for key, value in json.loads(json.dumps(fields)).items():
        assert key in part, key
        sub = {**SCHEMA["properties"][key], "$defs": SCHEMA["$defs"]}
        jsonschema.Draft202012Validator(sub).validate(value)
    P.Reconfiguration.model_validate(fields["reconfiguration"])


# -- the README's summary.json row names exactly the schema's fields ------------------------

def readme_row(text: str) -> str:
    [row] = [line for line in text.splitlines() if line.startswith("| `summary.json` |")]
    return row


def readme_names(row: str) -> tuple[set[str], set[str]]:
    """Backticked field names in the row: those at its top level (outside any (), {} or
    []) and those inside them, which describe parts of a field."""
    top, inner, depth = set(), set(), 0
    for m in re.finditer(r"`([^`]*)`|([({\[])|([)}\]])", row):
        if m.group(2):
            depth += 1
        elif m.group(3):
            depth -= 1
        elif IDENT.fullmatch(m.group(1)):
            (inner if depth else top).add(m.group(1))
    return top, inner


def schema_names(schema: dict) -> set[str]:
    """Every property name and every enum value anywhere in the schema."""
    out: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            out.update(node.get("properties", {}))
            out.update(v for v in node.get("enum", []) if isinstance(v, str))
            if isinstance(node.get("const"), str):
                out.add(node["const"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(schema)
    return out


def readme_mismatches(row: str, schema: dict) -> list[str]:
    top, inner = readme_names(row)
    fields = set(schema["properties"])
    return sorted(
        [f"{f}: a field of the schema the README does not name" for f in fields - top - inner]
        + [f"{n}: named by the README, not a field of the schema" for n in top - fields]
        + [f"{n}: named by the README, nowhere in the schema"
           for n in inner - schema_names(schema)])


def test_the_readme_row_names_every_field_and_only_fields() -> None:
    row = readme_row((REPO / "README.md").read_text())
    top, _ = readme_names(row)
    assert len(top) > 50  # the parser found the row's fields
    assert readme_mismatches(row, SCHEMA) == []


def test_the_readme_check_can_fail() -> None:
    row = readme_row((REPO / "README.md").read_text())
    added = {**SCHEMA, "properties": {**SCHEMA["properties"], "new_metric_ms": {}}}
    assert readme_mismatches(row, added) == [
        "new_metric_ms: a field of the schema the README does not name"]
    assert readme_mismatches(row + " `mttr_p99_ms`, `x` {`lost_ms`}", SCHEMA) == [
        "lost_ms: named by the README, nowhere in the schema",
        "mttr_p99_ms: named by the README, not a field of the schema",
        "x: named by the README, not a field of the schema"]
    gone = {**SCHEMA, "properties": {k: v for k, v in SCHEMA["properties"].items()
                                     if k != "cpu_s_by_node"}}
    assert readme_mismatches(row, gone) == [
        "cpu_s_by_node: named by the README, nowhere in the schema"]


# -- real runs (root) ---------------------------------------------------------------------

# Every live pipeline test's run is validated against the committed schema too
# (tests/helpers.run_pipeline: failover, repartition, the har join, docker, ...); here the
# kinds no other live test makes.
LIVE = {
    "canary": ["technique=failover", "faults=edge_crash", "run.duration_s=3",
               "measure.canary_hz=200"],
}


@pytest.mark.needs_root
@root_only
@pytest.mark.parametrize("name", list(LIVE))
def test_a_real_pipeline_run_validates(name: str) -> None:
    s, _, _ = run_pipeline(*LIVE[name], valid=False)
    validate(s)
    assert not [w for w in s["warnings"] if w.startswith(S.SCHEMA_WARNING)], s["warnings"]
    if name == "canary":
        assert s["mttr_source"] == "canary" and s["mttr_resolution_ms"] == pytest.approx(5)


@pytest.mark.needs_root
@root_only
def test_a_real_emulation_only_run_validates() -> None:
    p = harness_cmd("topology=pair", DEGRADE.format(at=0.5, f=0.5), "run.duration_s=2")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    s = json.loads((run_dir(p.stdout) / "summary.json").read_text())
    validate(s)
    assert s["workload"] is None and s["link_stats"] and s["network"]["links"]
