"""The session protocol: one long-lived shell in a pod's sidecar agent that runs the controller's requests.

Pure code, as `agent` is: the argv that starts the session, the text of each request, the reading of
each reply. Opening, writing, waiting and deadlines are `k8s.sessions`'; when to use a session is
`sidecar`'s.

The session is `sh -c SCRIPT` (POSIX sh: dash, bash, busybox ash), started in the sidecar with stdin open.
It reads requests from stdin, one after the other, and answers each on stdout:

    request                      what the shell runs (under `timeout N` but the first)
    kvc ID fdb                   bridge -force -batch -   (the fdb lines, from a here-document)
    <packed fdb lines> %
    kvc ID links                 ip -force -batch -       (the link lines), then
    <link lines> %               bridge -force -batch -   (the fdb lines); exit: ip's if it failed
    <packed fdb lines> %
    kvc ID state                 the reads of `agent.STATE_ARGV`

    reply: the command's stdout, then "\\n--kvc-err-- ID\\n", its stderr, "\\n--kvc-end-- ID EXIT\\n"

An fdb body goes packed: `OP DEV IP [IP …]` a line (`append` or `del`, up to `PACKED` peers), which the
shell expands into the batch lines `fdb OP 00:00:00:00:00:00 dev DEV dst IP`, one per IP, in order (so
bridge's "Command failed -:N" still names the Nth entry). The shell reads its stdin one byte per `read`
(it must not read past its request), so a body costs the pod its length: a first sync with 199 peers is
2.6 kB packed instead of 11.2, and 3.2–3.5 ms of the pod's CPU instead of 4.5–4.6 (`python -m
bench.sessionscript --requests 200 --peers 199`); a change of one peer costs the same either way (1.2 ms).

A body ends with a line `%`, which no batch line can be (`agent._BATCH_LINE`). The command's stderr is
collected in the shell (`2>&1 >&3` in a command substitution) and sent on stdout after it, so a reply is
one ordered stream: the API server forwards stdout and stderr on separate channels with no order between
them. A body cut short (stdin ended before its `%`: the client went away mid-request) is never run: the
shell exits. The shell exits at stdin's end, so a session its client left ends by itself.

The `links` and `state` commands run under `timeout N`: the state read writes the session's stdout, and
blocks when the stream stalls, so a command left blocked there cannot hold the shell past the client's
deadline for long. The fdb batch, the request every member's every change is, does not: its lines only
append and delete entries (`_FDB_LINE`, checked here), so `bridge` prints nothing on stdout, its stderr
goes to the shell, and its stdin is a here-document: it can wait only in the kernel, on a netlink reply,
where the signal of `timeout` cannot reach it either. Left out, `timeout` costs no process per change: a
request takes about 1 ms of CPU in the pod instead of 2.8 (docs/sessions.md).

Every line that goes into a request is checked here against the batch grammar (validated words only, as
for the one-exec-per-batch path; fdb bodies only `fdb append` and `fdb del` lines of a flood entry, their
interface a valid name and their address of the characters addresses are written with, before they are
packed): the session adds no injection surface. The script turns pathname expansion off (`set -f`), so
the addresses it splits a packed line into are words, nothing more.
"""

from __future__ import annotations

import re

from .agent import _BATCH_LINE, ZERO_MAC, state_script, with_timeout
from .model import ExecResult
from .options import is_ifname

#: the kinds of request the session script knows
KINDS = ("fdb", "links", "state")
_END = "--kvc-end--"
_ERR = "--kvc-err--"
_BODY_END = "%"
#: the here-document's delimiter (only a line of the script itself can end it, never an expanded `$b`)
_HEREDOC = "KVC"
#: what an fdb body's lines are: changes of flood entries only, which print nothing on stdout
#: (`agent.FdbDiff.batch`), to an interface (`is_ifname`, checked too) at an address (what an IPv4 or
#: IPv6 address is written with: the shell splits a packed line into words, nothing in them it reads)
_FDB_LINE = re.compile(rf"fdb (append|del) {ZERO_MAC} dev ([A-Za-z0-9_.-]{{1,15}}) dst ([0-9A-Fa-f.:]{{2,45}})")
#: peers on one packed line of an fdb body
PACKED = 32


def session_argv(timeout: int) -> list[str]:
    """The exec that starts a session: `sh -c SCRIPT`; every command in it but the fdb batch under `timeout N`
    (see the module docstring)."""
    t = " ".join(with_timeout([], timeout))
    script = (
        "exec 3>&1; set -f\n"
        f"body() {{ b=; while IFS= read -r l; do [ \"$l\" = '{_BODY_END}' ] && return 0; b=\"$b$l\n\"; done; exit 0; }}\n"
        f"fdbs() {{ b=; while IFS=' ' read -r op dev ips; do [ \"$op\" = '{_BODY_END}' ] && return 0\n"
        f"  for ip in $ips; do b=\"${{b}}fdb $op {ZERO_MAC} dev $dev dst $ip\n\"; done; done; exit 0; }}\n"
        "while IFS=' ' read -r tag id kind; do\n"
        " [ \"$tag\" = kvc ] || exit 64\n"
        " case $kind in\n"
        f"  fdb) fdbs; e=$(bridge -force -batch - 2>&1 >&3 <<{_HEREDOC}\n$b\n{_HEREDOC}\n); r=$? ;;\n"
        f"  links) body; k=$b; fdbs; e=$(printf %s \"$k\" | {t} ip -force -batch - 2>&1 >&3); r=$?\n"
        f"   f=$(printf %s \"$b\" | {t} bridge -force -batch - 2>&1 >&3); s=$?; [ -z \"$f\" ] || e=\"$e\n$f\"; [ $r -ne 0 ] || r=$s ;;\n"
        f"  state) e=$({{ {state_script(timeout)}; }} 2>&1 >&3); r=$? ;;\n"
        "  *) exit 64 ;;\n"
        " esac\n"
        f" printf '\\n{_ERR} %s\\n%s\\n{_END} %s %s\\n' \"$id\" \"$e\" \"$id\" \"$r\"\n"
        "done\n"
    )
    return ["sh", "-c", script]


def request(ident: int, kind: str, *bodies: str) -> str:
    """The text of request `ident`: `fdb` takes the fdb batch, `links` the link batch and the fdb batch,
    `state` nothing. Raises ValueError for a line outside the batch grammar."""
    wanted = {"fdb": 1, "links": 2, "state": 0}.get(kind)
    if wanted is None or len(bodies) != wanted:
        raise ValueError(f"session request {kind!r} with {len(bodies)} bodies")
    text = f"kvc {int(ident)} {kind}\n"
    for n, body in enumerate(bodies):
        if kind == "links" and n == 0:
            lines = body.splitlines()
            if any(not _BATCH_LINE.fullmatch(line) for line in lines):
                raise ValueError(f"not a batch: {body[:80]!r}")
        else:
            lines = packed(body)
        text += "".join(line + "\n" for line in lines) + _BODY_END + "\n"
    return text


def packed(body: str) -> list[str]:
    """An fdb batch's lines packed (see the module docstring): consecutive lines of one change and one
    interface share a line, up to `PACKED` IPs. Raises ValueError for any other line."""
    lines: list[str] = []
    run: tuple[str, str] | None = None
    ips: list[str] = []
    for line in body.splitlines():
        match = _FDB_LINE.fullmatch(line)
        if match is None:
            raise ValueError(f"not an fdb batch line: {line[:80]!r}")
        op, dev, ip = match.groups()
        if (op, dev) != run or len(ips) == PACKED:
            if ips:
                lines.append(" ".join((*run, *ips)))
            if not is_ifname(dev):
                raise ValueError(f"not an fdb batch line: {line[:80]!r}")
            run, ips = (op, dev), []
        ips.append(ip)
    if ips:
        lines.append(" ".join((*run, *ips)))
    return lines


def reply_end(ident: int) -> re.Pattern[str]:
    """What ends the reply to request `ident` on stdout (the whole last line)."""
    return re.compile(rf"\n{_END} {int(ident)} (\d+)\n")


class ReplyError(ValueError):
    """A session's stdout is not a reply to the request it should answer."""


def parse_reply(ident: int, text: str) -> ExecResult:
    """The reply to request `ident` (stdout up to and including its end line) → the command's result."""
    end = reply_end(ident).search(text)
    err = f"\n{_ERR} {int(ident)}\n"
    at = text.find(err)
    if end is None or at < 0 or at > end.start() or end.end() != len(text):
        raise ReplyError(f"not a reply to request {ident}: {text[-120:]!r}")
    return ExecResult(int(end.group(1)), text[:at], text[at + len(err):end.start()])
