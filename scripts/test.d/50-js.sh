#!/usr/bin/env bash
# The TypeScript client's tests (node's test runner) against a real livestream server.
# Runs before pytest; skipped locally when node/npm are missing, a failure under CI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../js"
if ! command -v npm >/dev/null 2>&1; then
    case "${CI:-}" in ""|0|false|False|FALSE|no) echo "scripts/test: npm missing; skipping the JS tests" >&2; exit 0 ;; esac
    echo "scripts/test: npm is required under CI" >&2
    exit 1
fi
npm ci --no-audit --no-fund --loglevel=error
npm test
