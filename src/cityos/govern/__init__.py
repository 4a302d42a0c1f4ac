"""City governance (issue 12)."""
