"""Load hospital CSV files into a Hospital Directory API exactly once."""
