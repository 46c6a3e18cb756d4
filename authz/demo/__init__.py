"""The demo data set: the worked example of docs/DOMAIN.md (`authz serve --demo` imports it)."""
