"""Generated from protos/authz/v1/authz.proto by `make proto` (clients/python/generate_proto.py)."""
