"""`authz policy validate`'s checks: they live in `authz.engine.validation`, beside the
engine that loads the policy, since the server runs them on every start and reload."""

from authz.engine.validation import (
    ERROR,
    WARNING,
    Problem,
    ValidationReport,
    live_grant_problems,
    load_checked,
    read_texts,
    validate,
    validate_texts,
)

__all__ = [
    "ERROR",
    "WARNING",
    "Problem",
    "ValidationReport",
    "live_grant_problems",
    "load_checked",
    "read_texts",
    "validate",
    "validate_texts",
]
