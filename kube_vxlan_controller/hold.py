"""When a network's members hear of a change in membership: at once, or once the pods on their way joined.

A burst (a Deployment scaled from 0 to 200) changes every member's peers 200 times while the pods start
one after another. Told of every change, each member syncs once per coalescing window for as long as the
burst lasts, about ten times each for 200 pods on the sandbox: the execs, not the pods, then bound how
fast the burst is wired. So when membership changes while the network is growing by a large part
(`worth_holding`: the pods on their way — naming it, not members yet, not being deleted, not finished —
are at least a quarter of the members told so far), the network holds the change back from those
members until the pods that were on their way *then* have joined or gone (not the ones created later).
A burst then costs each member one sync at its end. A newcomer joining during the hold waits for its
end too, at most `stall` seconds of its own (told at once, its batch would be redone at the end: 3 execs
a pod instead of 2); a pod that left is told at once. Steady churn (a few pods on their way in a big
network) is not held: its members are told at once, and their own coalescing window gathers changes.

A hold ends early when none of the pods it awaits joined or went for `stall` seconds or a quarter of the
hold's age, whichever is longer (the pods left are stuck: an image that cannot be pulled, a crash loop;
a slow roll-out's gaps grow with it), and after `longest` seconds in any case: the network's `hold`
setting for the first hold of a growth, and as long as the growth has lasted so far for the next ones
(`longest_for`), so a roll-out of T seconds costs each member about log2(T / hold) syncs, and a member
hears of a peer at the latest about as long after it joined as the roll-out had lasted then.

Pure bookkeeping: the network actor owns one `Hold` at a time and asks it what to do; no clock of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

#: seconds without any awaited pod joining after which a hold ends (at least: see `Hold.stalled_at`)
STALL = 2.0
#: ... or this share of the hold's age, when longer
STALL_SHARE = 0.25


def longest_for(hold: float, growing_for: float) -> float:
    """How long a hold may last when the network has been growing for `growing_for` seconds."""
    return max(hold, growing_for)


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
    longest: float

    @classmethod
    def begin(cls, coming: set[str], now: float, longest: float) -> "Hold":
        return cls(set(coming), now, now, longest)

    def arrived(self, uid: str, now: float) -> None:
        """`uid` joined, went, or is no longer on its way (deleted, finished, no longer naming the network)."""
        if uid in self.awaited:
            self.awaited.discard(uid)
            self.progress = now

    def over(self, now: float, *, stall: float) -> bool:
        return not self.awaited or now >= self.check_at(stall=stall)

    def check_at(self, *, stall: float) -> float:
        """When `over` turns true unless an awaited pod arrives first."""
        return min(self.stalled_at(stall), self.since + self.longest)

    def stalled_at(self, stall: float) -> float:
        """The first moment t with no arrival for `stall` seconds and for STALL_SHARE of the age (t - since)."""
        by_share = (self.progress - STALL_SHARE * self.since) / (1 - STALL_SHARE)
        return max(self.progress + stall, by_share)
