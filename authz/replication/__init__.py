"""Many processes, one truth: the change log every process follows, revision tokens, Watch.

- `changes`: the store's change log (`authz.store.changes`) applied to an engine, in order.
- `tokens`: the revision tokens writes return and reads take (`at_least_as_fresh`).
- `follower`: the thread of each server process that applies the log to its engine.
- `watch`: the change log as a stream (the Watch call).
- `reads`: how fresh a read must be.

`authz serve --processes N` (the worker processes) is `authz.server.supervisor`: it assembles servers.
"""
