"""Operators working by e-mail: replies, commands, lifecycle (issue 3)."""
