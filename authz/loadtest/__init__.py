"""`authz loadtest`: a load generator pointed at a running deployment."""

KINDS = ("check", "batch", "lookup", "write")  # the kinds of call a run mixes
