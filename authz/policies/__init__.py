"""The shipped policy folder: the Casbin model, role defaults, subject catalogue and their test cases."""
