"""Everything that talks to the Kubernetes API; the only package that imports `kubernetes`.

- `client`: `connect()` → `Cluster` (configuration, the shared API client, own namespace)
- `pods`: `V1Pod` → `model.Pod`, and `PodStream` (list+watch by label selector → domain events)
- `configmaps`: `read_configmap()` and `ConfigMapStream`
- `listwatch`: the one list+watch loop both streams use (relist on 410, backoff reconnect)
- `execs`: `Executor` (exec with a deadline, stdin, exit code; bounded concurrency); `sessions`: `Session`
  (one long-lived exec carrying request after request)
- `websockets`: `ExecSockets` (opens exec websockets, all on one TLS context)
- `events`: `record_event()` (core/v1 Events on pods)
- `podstatus`: `ConditionWriter` (the Wired condition, patched through pods/status off the actors' threads)
- `errors`: the project's error types and `classify()`, the one place that sorts client failures
Values that leave this package are domain values (`model.Pod`, `ExecResult`, mappings) and the errors.
"""
