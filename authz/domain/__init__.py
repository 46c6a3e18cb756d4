"""Plain objects and rules of the guide: relations, rights, dates, delegation."""
