#!/usr/bin/env bash
# Plain AdamW against the hybrid predictive trainer on one job (`tritter train` with the flags
# given: the main job by default, or e.g. `--quick`, or `--data ... --tokenizer ...`): same data,
# steps, seed and learning-rate schedule; then plain AdamW again with as many steps as each
# hybrid run made backward passes (the same gradient compute, a shorter schedule). Reads each
# run's summary.json; prints a markdown table and writes it to BENCHMARKS.md (section
# hybrid_vs_plain).
#   scripts/hybrid_vs_plain.sh [flags for every run]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin tritter
bin=target/release/tritter
rows=""
matched=()
# One run with the given flags; appends its table row.
run() {
  local name="$1"; shift
  local out="runs/compare-$(echo "$name" | tr -c 'a-z0-9' '-')"
  $bin train --out "$out" --overwrite --dashboard quiet "$@" >/dev/null
  local line
  line=$(python3 -c 'import json, sys
s = json.load(open(sys.argv[1]))
a = s.get("task_accuracy")
print(s["backward_passes"], "%.4f" % s["final_validation_loss"], "-" if a is None else "%.1f" % (100 * a), "%.0f" % s["wall_seconds"])' "$out/summary.json")
  read -r backward val acc secs <<<"$line"
  rows+="| $name | $backward | $val | $acc | $secs |"$'\n'
  echo "$name: backward passes $backward, validation loss $val, task accuracy $acc%, $secs s"
  [[ "$name" == hybrid* ]] && matched+=("$backward")
  return 0
}
run "plain AdamW" "$@"
run "hybrid (defaults: full_steps 2)" "$@" --hybrid
run "hybrid, full_steps 1" "$@" --hybrid --hybrid-full-steps 1
# The flags without a `--steps N` (the matched runs set their own).
others=(); skip=0
for a in "$@"; do
  if [ $skip = 1 ]; then skip=0; elif [ "$a" = --steps ]; then skip=1; elif [[ "$a" != --steps=* ]]; then others+=("$a"); fi
done
for steps in "${matched[@]}"; do
  run "plain AdamW, $steps steps" "${others[@]}" --steps "$steps"
done
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)
body="## Hybrid predictive training against plain AdamW

Machine: $cpu, $(nproc) cores. Command: \`scripts/hybrid_vs_plain.sh $*\` (each run: \`tritter train $* <flags>\`, seed 42; the last rows: plain AdamW with as many steps as the hybrid runs above made backward passes).

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
