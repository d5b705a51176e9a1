"""Audits of the harness itself: does it judge two runs of one commit as equal (A/A)."""
