"""`authz loadtest`: a load generator pointed at a running deployment."""
