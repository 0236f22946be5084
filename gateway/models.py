"""The gateway keeps no tables of its own; usage rows live in audit (issue #4)."""
