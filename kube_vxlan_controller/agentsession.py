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

The opening may carry the first request, an fdb one of up to `CARRIED_MAX` characters packed, in its
argv: `sh -c SCRIPT kvc ID BODY` (`carried`, `session_argv`). The shell runs it before it reads its
stdin, so its reply comes first, and its body is not read a byte at a time.

An fdb body goes packed: `OP DEV IP [IP …]` a line (`append` or `del`, up to `PACKED` peers), which the
shell expands into the batch lines `fdb OP 00:00:00:00:00:00 dev DEV dst IP`, one per IP, in order (so
bridge's "Command failed -:N" still names the Nth entry). The shell reads its stdin one byte per `read`
(it must not read past its request), so a body costs the pod its length: a first sync with 199 peers is
2.6 kB packed instead of 11.2. It builds the batch a packed line at a time (`fdbs`): appending each of
199 lines to one string would copy that string 199 times. Figures: docs/sessions.md (`python -m
bench.sessionscript`).

A body ends with a line `%`, which no batch line can be (`agent._BATCH_LINE`). The fdb batch's stderr
goes straight to the session's stdout, between the reply's two markers (its lines print nothing on
stdout); the other commands' stderr is collected in the shell (`2>&1 >&3` in a command substitution)
and sent on stdout after their stdout. Either way a reply is one ordered stream: the API server forwards
stdout and stderr on separate channels with no order between them. A body cut short (stdin ended before
its `%`: the client went away mid-request) is never run: the shell exits. The shell exits at stdin's
end, so a session its client left ends by itself.

The `links` and `state` commands run under `timeout N`: the state read writes the session's stdout, and
blocks when the stream stalls, so a command left blocked there cannot hold the shell past the client's
deadline for long. The fdb batch, the request every member's every change is, does not: its lines only
append and delete entries (`_FDB_LINE`, checked here), so `bridge` prints nothing on stdout and its stdin
is a here-document. It can wait in the kernel, on a netlink reply, where the signal of `timeout` cannot
reach it either; and on writing its stderr (a line or two per failed entry) only once the pipe's 64 kB
are full and the stream stalls, which the client's deadline ends: it closes the session, and the write
fails. Left out, `timeout` costs no process per change: a request takes about 1 ms of CPU in the pod
instead of 2.8 (docs/sessions.md).

Every line that goes into a request is checked here against the batch grammar (validated words only, as
for the one-exec-per-batch path; fdb bodies only `fdb append` and `fdb del` lines of a flood entry, their
interface a valid name and their address of the characters addresses are written with, before they are
packed): the session adds no injection surface. The script turns pathname expansion off (`set -f`), so
the addresses it splits a packed line into are words, nothing more.
"""

from __future__ import annotations

import itertools
import re
from typing import Iterable, TypeVar

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
K = TypeVar("K")
#: the longest packed fdb body a session's opening carries in its argv, which goes in the URL of the exec
#: request (URL-encoded, with the script: under 6 kB, within the 8 kB request line common proxies allow)
CARRIED_MAX = 4096


def session_argv(timeout: int, first: tuple[int, str] | None = None) -> list[str]:
    """The exec that starts a session: `sh -c SCRIPT`; every command in it but the fdb batch under `timeout N`
    (see the module docstring). `first`: (ident, the packed body `carried` returned) of an fdb request the
    shell runs before it reads its stdin, so its reply is the first."""
    t = " ".join(with_timeout([], timeout))
    script = (
        "exec 3>&1; set -f\n"
        f"body() {{ b=; while IFS= read -r l; do [ \"$l\" = '{_BODY_END}' ] && return 0; b=\"$b$l\n\"; done; exit 0; }}\n"
        "fdbs() { f=; IFS='\n'; for l in $1; do IFS=' '; set -- $l; o=$1 d=$2; shift 2; s=\n"
        f"  for ip; do s=\"${{s}}fdb $o {ZERO_MAC} dev $d dst $ip\n\"; done; f=\"$f$s\"; done; unset IFS; }}\n"
        f"fdb() {{ fdbs \"$2\"; printf '\\n{_ERR} %s\\n' \"$1\"; bridge -force -batch - 2>&1 <<{_HEREDOC}\n$f\n{_HEREDOC}\n"
        f" printf '\\n{_END} %s %s\\n' \"$1\" \"$?\"; }}\n"
        "[ $# -eq 0 ] || fdb \"$@\"\n"
        "while IFS=' ' read -r tag id kind; do\n"
        " [ \"$tag\" = kvc ] || exit 64\n"
        " case $kind in\n"
        "  fdb) body; fdb \"$id\" \"$b\"; continue ;;\n"
        f"  links) body; k=$b; body; fdbs \"$b\"; e=$(printf %s \"$k\" | {t} ip -force -batch - 2>&1 >&3); r=$?\n"
        f"   x=$(printf %s \"$f\" | {t} bridge -force -batch - 2>&1 >&3); s=$?; [ -z \"$x\" ] || e=\"$e\n$x\"; [ $r -ne 0 ] || r=$s ;;\n"
        f"  state) e=$({{ {state_script(timeout)}; }} 2>&1 >&3); r=$? ;;\n"
        "  *) exit 64 ;;\n"
        " esac\n"
        f" printf '\\n{_ERR} %s\\n%s\\n{_END} %s %s\\n' \"$id\" \"$e\" \"$id\" \"$r\"\n"
        "done\n"
    )
    return ["sh", "-c", script] + ([] if first is None else ["kvc", str(int(first[0])), first[1]])


def carried(kind: str, *bodies: str) -> str | None:
    """The packed body of a request the session's opening can carry in its argv (`session_argv`), or None:
    an fdb request of at most `CARRIED_MAX` characters packed. ValueError as `request`."""
    if kind != "fdb" or len(bodies) != 1:
        return None
    text = "".join(line + "\n" for line in packed(bodies[0]))
    return text if len(text) <= CARRIED_MAX else None


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
    entries: list[tuple[tuple[str, str], str]] = []
    checked = None  # the interface name checked last (`is_ifname`, once a run of lines)
    for line in body.splitlines():
        match = _FDB_LINE.fullmatch(line)
        if match is None or (match[2] != checked and not is_ifname(match[2])):
            raise ValueError(f"not an fdb batch line: {line[:80]!r}")
        op, checked, ip = match.groups()
        entries.append(((op, checked), ip))
    return [" ".join((*run, *ips)) for run, ips in runs(entries)]


def runs(entries: Iterable[tuple[K, str]], size: int = PACKED) -> list[tuple[K, tuple[str, ...]]]:
    """(key, value) entries as runs of one key, up to `size` values each, in order: an fdb body's packed
    lines (key: change and interface), and the log lines of a sync's fdb changes (`podexec`)."""
    out: list[tuple[K, tuple[str, ...]]] = []
    for key, group in itertools.groupby(entries, key=lambda entry: entry[0]):
        values = tuple(value for _, value in group)
        out += [(key, values[at:at + size]) for at in range(0, len(values), size)]
    return out


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
