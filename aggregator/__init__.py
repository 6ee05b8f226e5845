"""The aggregator: pure robust-aggregation math (`rules`), the round as pure stages shared with the
auditor (`round`), and the long-running service (`service`).
"""
