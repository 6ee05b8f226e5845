"""fedmarket's marketplace side: the shared core, the chain and storage adapters, the owner
and auditor roles, the CLI and the demo.

Layers (enforced by import-linter, see `.importlinter`): entry points (`cli`, `simulation`) →
roles (`owner`, `audit`, `devtools`, and `aggregator.service`, `trainer_client`) → protocol
(`aggregator.round`, then `protocol`) → adapters and math (`chain`, `storage`, `aggregator.rules`)
→ `core`. A package imports only from the layers below it.
"""
