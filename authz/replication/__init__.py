"""Many processes, one truth: the change log every process follows, revision tokens, Watch.

- `changes`: what one committed write changed, as the change log keeps it.
- `tokens`: the revision tokens writes return and reads take (`at_least_as_fresh`).
- `follower`: the thread of each server process that applies the log to its engine.
- `supervisor`: `authz serve --processes N`.
"""
