#!/usr/bin/env python3
"""Compile the Solidity contracts and write backend/chain/artifacts/<Name>.json.

python scripts/compile_contracts.py          # (re)write the artifacts
python scripts/compile_contracts.py --check  # exit 1 if committed artifacts are stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.devtools.compile import (
    ARTIFACTS_DIR,
    artifact_json,
    compile_contracts,
    write_artifacts,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--out", type=Path, default=ARTIFACTS_DIR, help="artifact directory")
    args = parser.parse_args(argv)

    artifacts = compile_contracts()
    if args.check:
        stale = []
        for name, artifact in sorted(artifacts.items()):
            path = args.out / f"{name}.json"
            if not path.is_file() or path.read_text(encoding="utf-8") != artifact_json(artifact):
                stale.append(name)
        extra = sorted(p.stem for p in args.out.glob("*.json") if p.stem not in artifacts)
        if stale or extra:
            print(f"stale artifacts: {stale}; unexpected: {extra}", file=sys.stderr)
            return 1
        print(f"{len(artifacts)} artifacts up to date")
        return 0
    for path in write_artifacts(args.out, artifacts):
        size = (len(artifacts[path.stem]["deployedBytecode"]) - 2) // 2
        print(f"wrote {path} (deployed {size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
