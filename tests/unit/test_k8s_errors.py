"""errors.classify: every client failure sorted into terminal, timeout, retryable, or other."""

from __future__ import annotations

import json
import socket

import pytest
import urllib3
import websocket
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kube_vxlan_controller.k8s.corev1 import CoreV1
from kube_vxlan_controller.k8s.errors import (ApiUnavailable, Conflict, ExecTimeout, Forbidden, K8sError, PodGone,
                                               classify)
from kube_vxlan_controller.k8s.websockets import ExecSockets


def status_body(code: int, reason: str, message: str) -> str:
    return json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": message, "reason": reason, "code": code})


def handshake(code: int, phrase: str, body: str) -> websocket.WebSocketBadStatusException:
    """What websocket-client raises when the server refuses the websocket upgrade (its text, as 1.9 words it)."""
    headers = {"content-type": "application/json", "content-length": str(len(body))}
    return websocket.WebSocketBadStatusException(f"Handshake status {code} {phrase} -+-+- {headers} -+-+- {body}",
                                                 code, phrase, headers, body.encode())


def rest(code: int, reason: str, message: str) -> ApiException:
    exc = ApiException(status=code, reason=reason)
    exc.body = status_body(code, reason, message)
    return exc


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_on_closed_port() -> client.CoreV1Api:
    configuration = client.Configuration(host=f"http://127.0.0.1:{closed_port()}")
    configuration.retries = 0
    return client.CoreV1Api(client.ApiClient(configuration))


def test_exec_into_missing_pod_is_pod_gone_with_the_status_message():
    error = classify(handshake(404, "Not Found", status_body(404, "NotFound", 'pods "a-0" not found')))
    assert isinstance(error, PodGone)
    assert error.status == 404
    assert 'pods "a-0" not found' in str(error)


@pytest.mark.parametrize(
    "message",
    ["container vxlan-controller-agent is not valid for pod a-0", 'container not found ("vxlan-controller-agent")'],
)
def test_exec_into_missing_container_is_pod_gone(message):
    error = classify(handshake(400, "Bad Request", status_body(400, "BadRequest", message)))
    assert isinstance(error, PodGone)
    assert error.status == 400


def test_other_bad_requests_are_not_pod_gone():
    error = classify(handshake(400, "Bad Request", status_body(400, "BadRequest", "pod a-0 does not have a host assigned")))
    assert type(error) is K8sError
    assert error.status == 400


def test_rest_404_is_pod_gone():
    assert isinstance(classify(rest(404, "Not Found", 'pods "a-0" not found')), PodGone)


@pytest.mark.parametrize("code", [500, 502, 503, 504, 429, 408])
def test_server_errors_and_throttling_are_retryable(code):
    assert isinstance(classify(rest(code, "Oops", "try later")), ApiUnavailable)
    assert isinstance(classify(handshake(code, "Oops", status_body(code, "Oops", "try later"))), ApiUnavailable)


DENIED = ('pods "a-0" is forbidden: User "system:serviceaccount:kube-system:kube-vxlan-controller" cannot create '
          'resource "pods/exec" in API group "" in the namespace "default"')


def test_rbac_denials_are_forbidden_with_the_missing_permission_named():
    for exc in (rest(403, "Forbidden", DENIED), handshake(403, "Forbidden", status_body(403, "Forbidden", DENIED))):
        error = classify(exc)
        assert type(error) is Forbidden
        assert error.status == 403
        assert 'cannot create resource "pods/exec"' in str(error)


def test_409_is_a_conflict_read_again():
    error = classify(rest(409, "Conflict", "the object has been modified"))
    assert type(error) is Conflict
    assert error.status == 409


@pytest.mark.parametrize("code", [401, 422])
def test_auth_and_validation_errors_are_plain_k8s_errors(code):
    error = classify(rest(code, "No", "denied"))
    assert type(error) is K8sError
    assert error.status == code
    assert "denied" in str(error)


def test_an_upgrade_answered_200_is_an_error_not_a_success():
    error = classify(websocket.WebSocketBadStatusException("Handshake status 200 OK -+-+- {} -+-+- None", 200))
    assert type(error) is K8sError
    assert error.status == 200


def test_refused_rest_connection_is_retryable_and_chained():
    with pytest.raises(urllib3.exceptions.MaxRetryError) as raised:
        api_on_closed_port().list_namespaced_pod("default", _request_timeout=2)
    error = classify(raised.value)
    assert isinstance(error, ApiUnavailable)
    assert error.__cause__ is raised.value


def test_refused_exec_connection_is_retryable():
    sockets = ExecSockets(CoreV1(api_on_closed_port().api_client), threads=1)
    with pytest.raises(ConnectionRefusedError) as raised:
        sockets.open("default", "a-0", "agent", ["true"], stdin=False)
    assert isinstance(classify(raised.value), ApiUnavailable)


@pytest.mark.parametrize("exc", [ConnectionResetError("reset"), TimeoutError(), urllib3.exceptions.ProtocolError("ended")])
def test_socket_level_failures_are_retryable(exc):
    assert isinstance(classify(exc), ApiUnavailable)


def test_our_own_errors_pass_unchanged():
    for error in (PodGone("x"), ExecTimeout("x"), ApiUnavailable("x"), K8sError("x")):
        assert classify(error) is error


def test_unknown_exceptions_become_plain_k8s_errors_with_their_cause():
    original = ValueError("odd")
    error = classify(original)
    assert type(error) is K8sError
    assert error.__cause__ is original
    assert "ValueError" in str(error)


def test_terminal_and_retryable_errors_share_one_base():
    assert issubclass(PodGone, K8sError) and issubclass(ExecTimeout, K8sError) and issubclass(ApiUnavailable, K8sError)
    assert not issubclass(PodGone, ApiUnavailable) and not issubclass(ApiUnavailable, PodGone)
