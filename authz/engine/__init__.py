"""The decision engine: the Casbin model as the truth, indexes that make checks fast."""
