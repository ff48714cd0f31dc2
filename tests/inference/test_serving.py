"""``mlflow models serve`` of the registered spine-age model answers a scan path with its spine age, or 400 and why.

One server for the module (started in seconds to tens of seconds, hence slow), on the
package's tiny registered models (tests/inference/conftest.py).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spineage.inference.predict import Models, ScanRequest, predict_scan
from tests.inference.conftest import MRI_CORRECTION, NORMATIVE, TRAINING_SUBJECTS, sessions

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 120.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ping(url: str) -> int | None:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=2) as answer:
            return answer.status
    except (urllib.error.URLError, OSError):
        return None


def _strict_json(text: bytes) -> dict[str, Any]:
    """JSON as any client parses it: NaN and Infinity (Python's extension) refused."""

    def refuse(constant: str) -> None:
        raise ValueError(f"Expected standard JSON, found {constant} in {text[:300]!r}")

    return json.loads(text, parse_constant=refuse)


def _invoke(url: str, records: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """(HTTP status, parsed JSON body) of ``POST /invocations`` with ``dataframe_records``."""
    request = urllib.request.Request(
        f"{url}/invocations", data=json.dumps({"dataframe_records": records}).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, _strict_json(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, _strict_json(error.read())


@pytest.fixture(scope="module")
def served(registry, tmp_path_factory) -> Iterator[str]:
    """The base URL of ``mlflow models serve -m models:/spine-age-mri@production`` on the registry's store."""
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    # The serve command starts `uvicorn` by name: the venv's bin must be on PATH whoever runs pytest.
    env = {**os.environ, "MLFLOW_TRACKING_URI": registry.uri, "MLFLOW_DISABLE_TELEMETRY": "true",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/spine-age-mri@production",
               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    with log.open("wb") as output:
        # Its own process group, so that the uvicorn worker it starts goes down with it.
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while _ping(url) != 200:
            if server.poll() is not None or time.monotonic() > deadline:
                state = f"exited with {server.returncode}" if server.poll() is not None else f"no 200 from /ping in {STARTUP_SECONDS:g} s"
                pytest.fail(f"mlflow models serve {state}; its output:\n{log.read_text(errors='replace')}")
            time.sleep(0.5)
        yield url
    finally:
        if server.poll() is None:
            os.killpg(server.pid, 15)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, 9)
                server.wait()


def test_the_served_model_answers_a_scan_as_predict_does(served: str, registry, phantom: Path) -> None:
    scan = sessions(phantom, "mri_t2_sag").iloc[TRAINING_SUBJECTS]  # a subject outside the training reference
    status, body = _invoke(served, [{"path": scan.path, "age": 50.0, "sex": "F"}, {"path": scan.path}])
    assert status == 200, body["message"][-600:]
    row, ageless = body["predictions"]
    assert row["scan"] == scan.path and row["kind"] == "mri"
    assert row["model"] == f"models:/spine-age-mri/{registry.mri_version}"
    raw = row["spine_age_raw"]
    assert row["spine_age"] == pytest.approx((raw - MRI_CORRECTION.intercept) / MRI_CORRECTION.slope, abs=2e-3)
    assert row["sag"] == pytest.approx(row["spine_age"] - 50.0, abs=2e-3)
    assert row["sag_high"] - row["sag_low"] == pytest.approx(2 * NORMATIVE.half_width, abs=2e-3)
    assert row["atypical_for_age"] is (not row["sag_low"] <= row["sag"] <= row["sag_high"])
    assert row["in_distribution"] is True and row["flags"] == ""
    # Without the age: the same spine age (Cole's correction does not read it), no gap, no verdict.
    assert ageless["spine_age"] == row["spine_age"]
    assert ageless["sag"] is None and ageless["sag_low"] is None and ageless["atypical_for_age"] is None
    # The same numbers as in-process prediction: nothing lost between the frame and the JSON.
    local = predict_scan(ScanRequest(Path(scan.path), age=50.0, sex="F"), Models())
    assert (raw, row["spine_age"], row["sag"]) == (local["spine_age_raw"], local["spine_age"], local["sag"])


def test_the_served_model_answers_a_missing_scan_with_400_and_the_reason(served: str, phantom: Path, tmp_path: Path) -> None:
    scan = sessions(phantom, "mri_t2_sag").iloc[TRAINING_SUBJECTS]
    missing = tmp_path / "absent.nii.gz"
    status, body = _invoke(served, [{"path": scan.path, "age": 50.0}, {"path": str(missing), "age": 50.0}])
    assert status == 400, body
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    reason = body["message"].splitlines()[-1]
    assert reason.endswith(f"row 1: Expected a scan (NIfTI file, DICOM series folder, PNG or DICOM image), found no such file or folder: {missing}")
    assert "Traceback" not in body["message"]
