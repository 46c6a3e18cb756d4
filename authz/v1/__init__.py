"""Generated from protos/authz/v1/authz.proto by `make proto`. Never edit by hand."""
