"""Results people can read: the summary tables, the figures, and the papers' reported numbers."""
