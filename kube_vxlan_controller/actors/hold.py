"""When a network's members hear of a change in membership: at once, or once the pods on their way joined.

A burst (a Deployment scaled from 0 to 200) changes every member's peers 200 times while the pods start
one after another. Told of every change, each member syncs once per coalescing window for as long as the
burst lasts, about ten times each for 200 pods on the sandbox: the execs, not the pods, then bound how
fast the burst is wired. So when membership changes while the network is growing by a large part
(`worth_holding`: the pods on their way — naming it, not members yet, not being deleted, not finished —
are at least a quarter of the members told so far), the network holds the change back from those
members until the pods that were on their way *then* have joined or gone (not the ones created later).
A burst then costs each member one sync at its end. A newcomer is told at once (its own batch holds
every member already there), and so is a pod that left. Steady churn (a few pods on their way in a big
network) is not held: its members are told at once, and their own coalescing window gathers changes.

A hold ends early when none of the pods it awaits joined or went for `STALL` seconds (one is stuck: an
image that cannot be pulled, a crash loop), and after `longest` seconds in any case.

Pure bookkeeping: the network actor owns one `Hold` at a time and asks it what to do; no clock of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

#: seconds without any awaited pod joining after which a hold ends
STALL = 2.0


def worth_holding(coming: int, told: int) -> bool:
    """Whether `coming` pods on their way make holding `told` members' changes back pay: the network is
    growing by a quarter or more (a burst, a scale-up), not churning a little."""
    return told > 0 and 4 * coming >= told


@dataclass(slots=True)
class Hold:
    #: the pods on their way when the hold began, that have neither joined nor gone since
    awaited: set[str]
    since: float
    #: when the last awaited pod joined or went (at first: `since`)
    progress: float

    @classmethod
    def begin(cls, coming: set[str], now: float) -> "Hold":
        return cls(set(coming), now, now)

    def arrived(self, uid: str, now: float) -> None:
        """`uid` joined, went, or is no longer on its way (deleted, finished, no longer naming the network)."""
        if uid in self.awaited:
            self.awaited.discard(uid)
            self.progress = now

    def over(self, now: float, *, stall: float, longest: float) -> bool:
        return not self.awaited or now - self.progress >= stall or now - self.since >= longest

    def check_at(self, *, stall: float, longest: float) -> float:
        """When `over` may next turn true without an arrival."""
        return min(self.progress + stall, self.since + longest)
