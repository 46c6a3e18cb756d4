"""Tools for the people who edit authz/policies/: validate, test, diff (`authz policy ...`)."""

from authz.policytools.validate import Problem, ValidationReport, load_checked, read_texts, validate, validate_texts

__all__ = ["Problem", "ValidationReport", "load_checked", "read_texts", "validate", "validate_texts"]
