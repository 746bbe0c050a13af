"""Workflow steps: each reads files, calls the package, writes files. One `qialign` command each."""
