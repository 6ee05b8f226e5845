"""A client module that fails on import (the CLI says so in one line)."""

raise RuntimeError("this client module is broken")
