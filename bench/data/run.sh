#!/usr/bin/env bash
# prep + collate over a Flickr8k-sized dataset: 8,091 generated JPEGs of 500x375 (Kaggle layout),
# collated for BLIP-base's 384x384 preprocessor. Prints images/s and the artifacts' sizes.
#   bench/data/run.sh [WORKDIR=target/bench-data] [IMAGES=8091] [MODEL_DIR]
# The generated images are kept in WORKDIR/data and reused by later runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
work="${1:-target/bench-data}"
shift || true
cargo build --release -p pipe-collate --example bench
exec "${CARGO_TARGET_DIR:-target}/release/examples/bench" "$work" "$@"
