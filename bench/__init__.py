"""The harness: gradient agreement, timing, records, reports, comparison, CLI.

Imports no framework at package import; backends are loaded through `impls`.
"""
