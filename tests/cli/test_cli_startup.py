"""The console script as an operator meets it: every start-up error is one line on stderr that says what is
wrong and what to do, with its documented exit code and no traceback (except with --log-level DEBUG);
retry loops say once what to check. Each case runs the real console script in a process of its own."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from polling import wait_for

from kube_vxlan_controller import __version__

ROOT = Path(__file__).resolve().parents[2]
#: as in a shell outside any pod, whatever the machine running the tests has set
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("KVC_", "KUBE", "GLIBC_TUNABLES"))}


def kvc(*args: str, env: dict[str, str] | None = None, home: Path | None = None) -> subprocess.CompletedProcess:
    environ = {**CLEAN_ENV, **(env or {})}
    if home is not None:
        environ["HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "kube_vxlan_controller.cli", *args], capture_output=True,
                          text=True, env=environ, cwd=ROOT, timeout=60)


def one_line(proc: subprocess.CompletedProcess, code: int) -> str:
    """The one line a failed start-up printed (asserting it is one, without a traceback, with `code`)."""
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def kubeconfig_for(path: Path, server: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "wrong"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }))
    return path


@pytest.fixture
def malformed(tmp_path) -> Path:
    path = tmp_path / "malformed"
    path.write_text("apiVersion: v1\nkind: Config\nclusters: [\n  - bad: {")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_version_flag_and_command():
    for args in (["--version"], ["version"]):
        proc = kvc(*args)
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"{__version__}\n", "")


def test_a_missing_kubeconfig_says_so_and_how_to_name_one():
    line = one_line(kvc("run", "--kubeconfig", "/nope"), 3)
    assert line == ("kube-vxlan-controller run: kubeconfig /nope: no such file: give the path of a kubeconfig file "
                    "(--kubeconfig, KVC_KUBECONFIG)")


def test_a_malformed_kubeconfig_says_where_instead_of_a_yaml_parser_error(malformed):
    line = one_line(kvc("run", "--kubeconfig", str(malformed)), 3)
    assert line == (f"kube-vxlan-controller run: kubeconfig {malformed} is not valid YAML ({malformed}, line 4, "
                    f"column 3: expected the node content, but found '-'); fix the file")


def test_run_honours_kubeconfig_outside_a_pod_as_kubectl(malformed, tmp_path):
    line = one_line(kvc("run", env={"KUBECONFIG": f"{tmp_path / 'missing'}:{malformed}"}), 3)
    assert line.startswith(f"kube-vxlan-controller run: KUBECONFIG={tmp_path / 'missing'}:{malformed} is not valid "
                           f"YAML ({malformed}, line 4"), line
    line = one_line(kvc("run", home=tmp_path), 3)
    assert line == (f"kube-vxlan-controller run: kubeconfig {tmp_path}/.kube/config: no such file, KUBECONFIG is unset "
                    "and this is not a pod (KUBERNETES_SERVICE_HOST is unset): give --kubeconfig PATH or set KUBECONFIG")


@pytest.mark.parametrize("args, env, said", [
    (["--exec-deadline", "abc"], {},
     "argument --exec-deadline: invalid float value: 'abc' (see kube-vxlan-controller run --help)"),
    ([], {"KVC_EXEC_DEADLINE": "abc"}, "KVC_EXEC_DEADLINE='abc': not a number"),
    ([], {"KVC_MAX_CONCURRENT_EXECS": "2.5"}, "KVC_MAX_CONCURRENT_EXECS='2.5': not a whole number"),
    (["--resync", "-5"], {}, "--resync: must be more than 0 seconds, not -5"),
    ([], {"KVC_RESYNC": "0"}, "KVC_RESYNC='0': must be more than 0 seconds, not 0"),
    (["--hold", "nan"], {}, "--hold: must be at least 0 seconds, not nan"),
    (["--log-level", "LOUD"], {},
     "--log-level: must be one of TRACE, DEBUG, INFO, SUCCESS, WARNING, ERROR, CRITICAL, not 'LOUD'"),
    (["--log-format", "xml"], {}, "--log-format: must be one of text, json, not 'xml'"),
    (["--admin", "0.0.0.0:8081"], {},
     "--admin: must be a loopback IP address and a port (127.0.0.1:8081), not '0.0.0.0:8081'"),
    ([], {"KVC_HEALTH": "0.0.0.0:http"},
     "KVC_HEALTH='0.0.0.0:http': must be HOST:PORT (or '' for none), not '0.0.0.0:http'"),
    (["--terminate-file", "a b"], {},
     "--terminate-file: terminate file must be an absolute path of [A-Za-z0-9_./-], not 'a b'"),
    (["--bogus"], {}, "unrecognized arguments: --bogus (see kube-vxlan-controller run --help)"),
])
def test_a_bad_flag_or_variable_is_a_usage_error_naming_it(args, env, said):
    assert one_line(kvc("run", "--kubeconfig", "/nope", *args, env=env), 2) == f"kube-vxlan-controller run: {said}"


def test_an_unknown_command_is_a_usage_error_in_one_line():
    assert one_line(kvc("runn"), 2) == ("kube-vxlan-controller: unknown command 'runn' (commands: run, inspect, list, "
                                        "plan; see kube-vxlan-controller --help)")


def test_an_address_in_use_names_the_endpoint_and_the_address(tmp_path):
    kubeconfig = kubeconfig_for(tmp_path / "kubeconfig", f"http://127.0.0.1:{free_port()}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = "127.0.0.1:%d" % taken.getsockname()[1]
        proc = kvc("run", "--kubeconfig", str(kubeconfig), "--admin", "", "--health", address, "--log-level", "WARNING")
        line = one_line(proc, 3)
        assert line == (f"kube-vxlan-controller run: the health endpoint cannot listen on {address}: Address already "
                        "in use; give it another address (--admin, --health or their KVC_* variables; '' turns one "
                        "off), or stop what listens there")
        debug = kvc("run", "--kubeconfig", str(kubeconfig), "--admin", address, "--health", "", "--log-level", "DEBUG")
    assert debug.returncode == 3 and "Traceback" in debug.stderr and "OSError: [Errno 98]" in debug.stderr
    assert debug.stderr.splitlines()[-1].startswith(f"kube-vxlan-controller run: the query endpoint cannot listen on "
                                                    f"{address}: Address already in use; "), debug.stderr


def test_plan_without_a_cluster_points_to_planning_offline(tmp_path):
    line = one_line(kvc("plan", "gw", home=tmp_path), 3)
    assert line.startswith("kube-vxlan-controller plan: cannot reach the cluster: kubeconfig "), line
    assert line.endswith("; without a cluster, plan offline with -f FILE --configmap FILE"), line
    line = one_line(kvc("plan", "-f", "deploy/example.yaml", "gw", home=tmp_path), 3)
    assert line.endswith("; without a cluster, plan offline with --configmap FILE (the network ConfigMap's "
                         "manifest)"), line


def test_plan_has_no_short_n_flag_whose_meaning_kubectl_users_would_guess():
    assert one_line(kvc("plan", "-n", "kube-system", "gw"), 2) == (
        "kube-vxlan-controller plan: unrecognized arguments: -n gw (see kube-vxlan-controller plan --help)")
    assert "--pod-namespace NS" in kvc("plan", "--help").stdout


class _Refusing(BaseHTTPRequestHandler):
    """An API server that accepts no credentials: every request gets kube-apiserver's 401 Status."""

    def do_GET(self):  # noqa: N802
        body = json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                           "message": "Unauthorized", "reason": "Unauthorized", "code": 401}).encode() + b"\n"
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def refusing_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("server, check", [
    ("refusing", "the API server does not accept the credentials (401): check the token or client certificate"),
    ("nobody", "the API server does not answer: check that it runs and its address"),
])
def test_a_retry_loop_says_once_what_to_check_then_backs_off_quietly(server, check, refusing_server, tmp_path):
    url = refusing_server if server == "refusing" else f"http://127.0.0.1:{free_port()}"
    kubeconfig = kubeconfig_for(tmp_path / "kubeconfig", url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "kube_vxlan_controller.cli", "run", "--kubeconfig", str(kubeconfig), "--admin", "",
         "--health", "", "--lease-duration", "5", "--renew-deadline", "2", "--retry-period", "0.5",
         "--exec-deadline", "1", "--log-level", "DEBUG"],
        stderr=subprocess.PIPE, text=True, env=CLEAN_ENV, cwd=ROOT)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        # the lease's list-watch has failed three times, the elector's tries more
        wait_for(lambda: sum("failed again" in line for line in lines) >= 2, timeout=30,
                 what="the lease's list-watch retrying")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        reader.join(timeout=10)
    ours = [line for line in lines if " DEBUG " not in line and "urllib3" not in line]
    warnings = [line for line in ours if " WARNING " in line]
    assert len(warnings) == 2, "\n".join(ours)  # the lease's list-watch and the elector, once each
    assert all(check in line for line in warnings), "\n".join(warnings)
    assert proc.returncode == 0, "\n".join(lines)


def test_log_format_json_is_one_object_a_line_from_start_to_stop(tmp_path):
    kubeconfig = kubeconfig_for(tmp_path / "kubeconfig", f"http://127.0.0.1:{free_port()}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kube_vxlan_controller.cli", "run", "--kubeconfig", str(kubeconfig), "--admin", "",
         "--health", "", "--log-format", "json"], stderr=subprocess.PIPE, text=True, env=CLEAN_ENV, cwd=ROOT)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        wait_for(lambda: any("cannot read it" in line for line in lines), timeout=30, what="the elector's warning")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        reader.join(timeout=10)
    records = [json.loads(line) for line in lines]
    assert all(set(r) == {"time", "level", "pod", "network", "message"} for r in records), records
    assert records[-1]["message"] == "controller stopped (a standby: nothing ran)", records
    assert [r["level"] for r in records if "cannot read it" in r["message"]] == ["WARNING"]


def test_with_log_format_json_a_start_up_error_is_one_json_line():
    proc = kvc("run", "--kubeconfig", "/nope", "--log-format", "json")
    record = json.loads(one_line(proc, 3))
    assert (record["level"], record["pod"], record["message"]) == (
        "ERROR", None, "kube-vxlan-controller run: kubeconfig /nope: no such file: give the path of a kubeconfig "
                       "file (--kubeconfig, KVC_KUBECONFIG)")


@pytest.mark.parametrize("given, seen", [(None, "glibc.malloc.tcache_count=0:glibc.malloc.arena_max=2"),
                                         ("", ""), ("glibc.malloc.arena_max=4", "glibc.malloc.arena_max=4")])
def test_run_starts_again_with_glibc_malloc_tuned_unless_the_operator_set_it(given, seen):
    env = {} if given is None else {"GLIBC_TUNABLES": given}
    proc = kvc("run", "--kubeconfig", "/nope", "--log-level", "DEBUG", env=env)
    assert proc.returncode == 3, proc.stderr
    assert f"malloc: GLIBC_TUNABLES={seen!r}" in proc.stderr
    assert proc.stderr.count("malloc: GLIBC_TUNABLES") == 1
