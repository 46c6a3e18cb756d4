"""`authz bench`: realistic generated data sets, and the figures the check path is held to."""
