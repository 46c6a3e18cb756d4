"""The demo data set: the worked example of DOMAIN.md (`authz serve --demo` imports it)."""
