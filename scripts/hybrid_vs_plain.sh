#!/usr/bin/env bash
# Plain AdamW against the hybrid predictive trainer on the generated corpus and the `test`
# preset: same data, steps, seed and learning-rate schedule; then plain AdamW again with as many
# steps as each hybrid run made backward passes (the same gradient compute, a shorter schedule).
# Prints a markdown table and writes it to BENCHMARKS.md (section hybrid_vs_plain).
#   scripts/hybrid_vs_plain.sh [extra flags for every run, e.g. --steps 3000]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --example train
bin=target/release/examples/train
runs=(
  "plain AdamW|"
  "hybrid (defaults: full_steps 2)|--hybrid"
  "hybrid, full_steps 1|--hybrid --hybrid-full-steps 1"
)
rows=""
matched=()
# One run of the example with the given flags; prints its log.
train() { $bin --dashboard quiet "$@" 2>&1; }
row() {
  local name="$1" log="$2" secs backward val acc
  secs=$(grep -oP 'in \K[0-9.]+(?= s)' <<<"$log")
  backward=$(grep -oP '[0-9]+(?= backward passes\.)' <<<"$log")
  val=$(grep -oP 'validation \K[0-9.]+' <<<"$log" | tail -1)
  acc=$(grep -oP 'greedy\): \K[0-9.]+' <<<"$log")
  rows+="| $name | $backward | $val | $acc | $secs |"$'\n'
  echo "$name: backward $backward, validation loss $val, task accuracy $acc%, $secs s"
  [[ "$name" == hybrid* ]] && matched+=("$backward")
  return 0
}
out_dir() { echo "runs/compare-$(echo "$1" | tr -c 'a-z0-9' '-')"; }
for run in "${runs[@]}"; do
  name=${run%%|*}; flags=${run#*|}
  out=$(out_dir "$name"); rm -rf "$out"
  row "$name" "$(train --out "$out" "$@" $flags)"
done
# The script's flags without a `--steps N` (the matched runs set their own).
others=(); skip=0
for a in "$@"; do
  if [ $skip = 1 ]; then skip=0; elif [ "$a" = --steps ]; then skip=1; elif [[ "$a" != --steps=* ]]; then others+=("$a"); fi
done
for steps in "${matched[@]}"; do
  name="plain AdamW, $steps steps"
  out=$(out_dir "$name"); rm -rf "$out"
  row "$name" "$(train --out "$out" "${others[@]}" --steps "$steps")"
done
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)
body="## Hybrid predictive training against plain AdamW

Machine: $cpu, $(nproc) cores. Command: \`scripts/hybrid_vs_plain.sh $*\` (each run: \`cargo run --release --example train -- <flags>\`, 1500 steps of 16 × 64 tokens unless the row says otherwise, seed 42; the last rows: plain AdamW with as many steps as the hybrid runs above made backward passes).

| run | backward passes | validation loss | held-out task accuracy % | seconds |
|---|---|---|---|---|
$rows"
python3 - "$body" <<'PY'
import sys, pathlib
body = sys.argv[1].rstrip()
path = pathlib.Path("BENCHMARKS.md")
text = path.read_text()
start, end = "<!-- hybrid_vs_plain -->", "<!-- /hybrid_vs_plain -->"
section = f"{start}\n{body}\n{end}"
if start in text and end in text:
    text = text[: text.index(start)] + section + text[text.index(end) + len(end):]
else:
    text = text.rstrip() + "\n\n" + section + "\n"
path.write_text(text)
PY
