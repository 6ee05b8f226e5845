"""A whole market in one process (`fedmarket demo`): owner, trainers (some simulated
adversaries), aggregator and auditor on the embedded chain and a local store.

An entry point: may import every role and everything below.
"""
