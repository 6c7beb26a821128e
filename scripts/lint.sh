#!/usr/bin/env bash
# Formatting and clippy with default features and with wgpu, warnings as errors. Run before pushing.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo clippy --all-targets --features wgpu -- -D warnings
