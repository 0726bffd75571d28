"""The bench: controllers against the minimal exec set (the oracle), side by side on the sandbox, in one run.

Modules: __main__ (the command), scenarios (burst, joins, churn, idle), run (one contestant on one fresh
sandbox: its processes), contestants (the contenders' named command templates, the oracle's command), oracle (the
oracle process), cluster (the sandbox process, its API, the bench's pod watch), poller (the kernel's view of
every fdb, a process of its own) and netlink (what it speaks), wiring (desired vs. actual, and when they met),
processes (children in sessions of their own, their CPU and memory), report (table, JSON, plot).
"""
