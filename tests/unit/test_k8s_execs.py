"""The exit status of an exec, read from the Kubernetes Status the server sends on channel 3."""

from __future__ import annotations

import json

from kube_vxlan_controller.k8s.execs import EXEC_FAILED, _result
from kube_vxlan_controller.model import ExecResult


def test_success_is_exit_code_zero():
    assert _result(json.dumps({"metadata": {}, "status": "Success"}), "out\n", "") == ExecResult(0, "out\n", "")


def test_non_zero_exit_code_comes_from_the_exit_code_cause():
    status = {"metadata": {}, "status": "Failure", "message": "command terminated with non-zero exit code: 3",
              "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}
    assert _result(json.dumps(status), "", "boom\n") == ExecResult(3, "", "boom\n")


def test_failure_without_details_is_exec_failed_with_the_message_in_stderr():
    status = {"metadata": {}, "status": "Failure", "reason": "InternalError",
              "message": 'OCI runtime exec failed: exec: "ipx": executable file not found in $PATH'}
    result = _result(json.dumps(status), "", "partial")
    assert result.exit_code == EXEC_FAILED == 126
    assert result.stderr == 'partial\nOCI runtime exec failed: exec: "ipx": executable file not found in $PATH'
    assert not result.ok


def test_failure_with_a_non_numeric_exit_code_is_exec_failed():
    status = {"status": "Failure", "message": "odd", "details": {"causes": [{"reason": "ExitCode", "message": "x"}]}}
    assert _result(json.dumps(status), "", "").exit_code == EXEC_FAILED


def test_unreadable_status_is_exec_failed_and_says_so():
    result = _result("not json", "", "")
    assert result.exit_code == EXEC_FAILED
    assert "unreadable exec status" in result.stderr
