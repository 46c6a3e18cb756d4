"""Name search that forgives accents and case: "helene" finds "Hélène", "tremblay" finds "Tremblay".

The key is computed in Python and stored beside the contact, so the search is the same
plain comparison on SQLite and on PostgreSQL (no collation or extension needed).
"""

from __future__ import annotations

import unicodedata

__all__ = ["search_key"]


def search_key(text: str) -> str:
    """NFKD, combining marks dropped, case folded, runs of spaces made one."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(bare.casefold().split())
