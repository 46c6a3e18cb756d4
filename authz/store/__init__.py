"""Persistence behind small Protocols; SQLAlchemy tables; Alembic migrations."""
