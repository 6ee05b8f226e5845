"""The `fedmarket` command. It only composes: each command parses flags, calls a role's library and
renders the result. Nothing imports it back.

An entry point: may import every role and everything below.
"""
