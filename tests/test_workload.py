"""Sample libraries, the accounting and bad workload, pipeline and technique input, without
root (the arrival schedule: tests/test_schedule.py)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from harness.core.config import ConfigError, from_dict
from harness.measure.metrics.outcomes import outcomes, summarize
from harness.measure.metrics.reference import reference_accuracy
from harness.workload.samples import datasets
from harness.workload.samples.digits import Digits
from harness.workload.samples.har import Har
from harness.workload.schedule import Scheduled, WorkloadConfig, make_schedule
from tests.helpers import REPO, exp_for


def wl(**kw) -> WorkloadConfig:
    return from_dict(WorkloadConfig, kw, "workload")


def test_samples_come_from_the_test_split() -> None:
    test = set(datasets.digits_split()[1].tolist())
    s = make_schedule(wl(rate_hz=100), ["s1"], 10, seed=0)
    assert {x.sample_id for x in s} <= test


def test_schedule_for_seed_1_is_unchanged() -> None:
    """Recorded from the implementation before sample libraries (digits hard-coded)."""
    s = make_schedule(wl(rate_hz=20), ["s1", "s2"], 5, seed=1)
    ids = [x.sample_id for x in s]
    assert ids[:30] == [791, 994, 1012, 37, 861, 141, 1509, 810, 1570, 537, 363, 901, 894, 685,
                        711, 846, 1261, 1438, 1510, 1086, 1696, 276, 815, 499, 1267, 850, 662,
                        1245, 510, 344]
    assert len(ids) == 200
    assert hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:16] == "b94dfc520d52cd80"


def test_digits_library_gives_the_frames_and_labels_datasets_gave() -> None:
    lib = wl().library()
    assert isinstance(lib, Digits) and lib.name == "digits"
    assert np.array_equal(lib.sample_ids(), datasets.digits_split()[1])
    for sample in lib.sample_ids()[:20]:
        assert lib.label(int(sample)) == datasets.digits_label(int(sample))
        for camera in range(3):
            for seed in (0, 1):
                p = lib.payload(int(sample), camera, seed)
                assert list(p) == list(lib.input_names(camera)) == ["image"]
                assert np.array_equal(p["image"], datasets.digits_frame(int(sample), camera,
                                                                          seed))
    assert lib.labels({1, 5}) == {1: datasets.digits_label(1), 5: datasets.digits_label(5)}


def test_sensor_noise_saturates_like_the_sensor() -> None:
    rng = np.random.default_rng(0)
    frame = Digits().payload(1, 0, 0)["image"]
    noisy = Digits().noisy(frame, rng, 0.5)
    assert noisy.dtype == np.float32 and noisy.shape == frame.shape
    assert noisy.min() >= 0 and noisy.max() <= 1 and not np.array_equal(noisy, frame)
    window = Har().payload(40, 0, 0)["acc"]
    noisy = Har().noisy(window, rng, 3.0)  # standardised: no clipping
    assert noisy.dtype == np.float32 and (noisy.min() < window.min() or noisy.max() > window.max())


def test_har_library_feeds_the_har_models() -> None:
    """No HAR pipeline yet: the library's payloads through the card's encoders and fusion."""
    ort = pytest.importorskip("onnxruntime")
    har = REPO / "models" / "har"
    card = json.loads((har / "card.json").read_text())
    lib = wl(samples={"_target_": "harness.workload.samples.har.Har",
                      "modalities": ["acc", "gyro"]}).library()
    ids = lib.sample_ids()
    assert ids.tolist() == list(range(40, 80)) and len(ids) == card["n_test"]
    enc = [ort.InferenceSession(str(har / f"{m}_encoder.onnx")) for m in ("acc", "gyro")]
    fusion = ort.InferenceSession(str(har / "fusion.onnx"))
    correct = 0
    for sample in ids:
        emb = {}
        for i, sess in enumerate(enc):
            p = lib.payload(int(sample), i, seed=0)
            (inp,) = sess.get_inputs()
            assert list(p) == list(lib.input_names(i)) == [inp.name]
            assert p[inp.name].shape == (1, *inp.shape[1:]) and p[inp.name].dtype == np.float32
            emb.update(zip([o.name for o in sess.get_outputs()], sess.run(None, p), strict=True))
        logits = fusion.run(None, {**emb, "mask": np.ones((1, 2), np.float32)})[0]
        correct += int(np.argmax(logits)) == lib.label(int(sample))
    assert correct / len(ids) == pytest.approx(card["test_accuracy"]["both"], abs=1 / 40 + 1e-9)
    with pytest.raises(ValueError, match="sensor_index=2"):
        lib.payload(40, 2, 0)


@pytest.mark.parametrize("samples,msg", [
    ({"_target_": "nope.Nope"}, "workload.samples._target_='nope.Nope': cannot be imported"),
    ({"_target_": "harness.workload.samples.digits.Nope"}, "workload.samples._target_="),
    ({}, "workload.samples._target_=None: missing"),
    ({"_target_": "harness.workload.samples.har.Har", "modalities": ["acc", "x"]},
     "workload.samples.modalities="),
    ({"_target_": "harness.workload.samples.digits.Digits", "zoom": 2},
     "workload.samples: Digits.__init__() got an unexpected keyword argument 'zoom'"),
])
def test_bad_sample_library(samples, msg) -> None:
    with pytest.raises(ConfigError) as e:
        wl(samples=samples)
    assert str(e.value).startswith(msg) and "\n" not in str(e.value), str(e.value)


def test_bad_sample_library_target_in_a_composed_config() -> None:
    with pytest.raises(ConfigError) as e:
        exp_for("topology=device_edge_cloud", "workload=digits",
                "workload.samples._target_=harness.workload.samples.nope.Nope")
    assert str(e.value) == ("workload.samples._target_='harness.workload.samples.nope.Nope': "
                            "cannot be imported")


def test_reference_accuracy_runs_the_whole_model_on_the_library_payloads() -> None:
    exp = exp_for("topology=device_edge_cloud", "workload=digits")
    lib, sensors = exp.workload.library(), ["s1", "s2"]
    ids = [int(i) for i in lib.sample_ids()[:12]]
    df = pd.DataFrame({"sensor": [sensors[k % 2] for k in range(12)], "sample_id": ids,
                       "label": [lib.label(i) for i in ids],
                       "status": ["ok"] * 10 + ["lost", "failed"]})
    ref = reference_accuracy(lib, exp.pipeline, df, sensors, noise_seed=0)
    assert ref is not None and 0.5 <= ref <= 1 and ref * 10 == pytest.approx(round(ref * 10))
    # the call harness/run/inference.py makes today (the workload's model name) agrees
    # the whole model takes "image"; a HAR sensor's payload does not fit it
    assert reference_accuracy(Har(), exp.pipeline, df, sensors, 0) is None


@pytest.mark.parametrize("kw,key", [({"rate_hz": 0}, "workload.rate_hz"),
                                    ({"rate_hz": -1}, "workload.rate_hz"),
                                    ({"arrival": "burst"}, "workload.arrival"),
                                    ({"slo_ms": 0}, "workload.slo_ms"),
                                    ({"arrival": "recorded"}, "workload.timestamps_file")])
def test_bad_workload(kw, key) -> None:
    with pytest.raises(ConfigError) as e:
        wl(**kw)
    assert str(e.value).startswith(key)


def test_accounting_every_request_exactly_once() -> None:
    sched = [Scheduled(i, "s1", i, i * 0.1) for i in range(6)]
    recs = {
        0: {"request_id": 0, "outcome": "answer", "sent_s": 0.0, "completed_s": 0.05,
            "prediction": 0, "path": "x"},
        1: {"request_id": 1, "outcome": "answer", "sent_s": 0.1, "completed_s": 0.4,
            "prediction": 9, "path": "x"},
        2: {"request_id": 2, "outcome": "error", "sent_s": 0.2, "completed_s": 0.21,
            "error": "UNAVAILABLE"},
        3: {"request_id": 3, "outcome": "lost", "sent_s": 0.3, "completed_s": 9},
        # 4: never recorded (its sensor died) -> lost
        5: {"request_id": 5, "outcome": "answer", "sent_s": 0.5, "completed_s": 99,
            "prediction": 5, "path": "x"},  # after the harness stopped waiting -> lost
    }
    df = outcomes(sched, recs, {i: i for i in range(6)}, slo_ms=100, answer_by_s=10)
    assert list(df["status"]) == ["ok", "late", "failed", "lost", "lost", "lost"]
    assert df.loc[1, "latency_ms"] == pytest.approx(300)
    s = summarize(df)
    assert s["n_scheduled"] == 6 == s["n_ok"] + s["n_late"] + s["n_failed"] + s["n_lost"]
    assert s["availability"] == pytest.approx(1 / 6)
    assert s["accuracy"] == pytest.approx(0.5)  # request 0 right, request 1 wrong


@pytest.mark.parametrize("overrides,key", [
    (["pipeline.stages.1.node=zz"], "pipeline.stages[1].node"),
    (["pipeline.stages.1.inputs=[nope]"], "pipeline.stages[1]: cut tensor 'nope'"),
    (["pipeline.stages.2.inputs=[m]"], "pipeline.stages[2]: partition 'tail' needs tensor 'h'"),
    (["pipeline.model_file=models/none.onnx"], "pipeline.model_file"),
    (["workload.rate_hz=0"], "workload.rate_hz"),
])
def test_bad_pipeline_input(overrides, key) -> None:
    with pytest.raises(ConfigError) as e:
        exp_for("topology=device_edge_cloud", "workload=digits", *overrides)
    assert str(e.value).startswith(key), str(e.value)


def test_corrupt_model_file(tmp_path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage\xff" * 10)
    with pytest.raises(ConfigError, match="pipeline.model_file"):
        exp_for("topology=device_edge_cloud", "workload=digits", f"pipeline.model_file={bad}")


@pytest.mark.parametrize("preset", ["on_device", "device_edge", "edge_edge",
                                    "device_edge_cloud"])
def test_pipeline_presets_validate(preset) -> None:
    exp = exp_for("topology=device_edge_cloud", "workload=digits", f"pipeline={preset}")
    carries = exp.plan.carries()
    assert carries[0] == ["image"]


@pytest.mark.parametrize("overrides,key", [
    (["technique=failover", "+technique.colour=red"], "technique"),
    (["technique=failover", "technique.mode=lukewarm"], "technique.mode"),
    (["technique=failover", "technique.replicas={middle: e1}"], "technique.replicas.middle"),
    (["technique=failover", "technique.replicas={middle: zz}"], "technique.replicas.middle"),
    (["technique=structural", "technique.skip_stage=head"], "technique.skip_stage"),
    (["technique=failover", "technique.detector=gossip"], "technique.detector"),
    (["technique=structural", "technique.suspect_min_ms=0"], "technique.suspect_min_ms"),
    (["technique=failover", "technique.idle_probe_ms=-5"], "technique.idle_probe_ms"),
    (["technique=failover", "technique.mode=active_active", "technique.detector=passive"],
     "technique.detector"),
    (["faults=sensor_crash", "topology.n_sensors=1"], "faults.actions[0].target"),
])
def test_bad_technique_input(overrides, key) -> None:
    with pytest.raises(ConfigError) as e:
        exp_for("topology=device_edge_cloud", "workload=digits", *overrides)
    assert str(e.value).startswith(key), str(e.value)
