//! Prints the presets as a markdown table: shapes and exact parameter counts.
//!
//! `cargo run --example presets`

use tritter::TritterConfig;

fn main() {
    println!(
        "| preset | hidden / layers / heads / kv heads | intermediate | vocab | tied | max_seq_len | parameters |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, c, _) in TritterConfig::presets() {
        let count = c.parameter_count();
        let human = if count >= 1_000_000_000 {
            format!("{:.2}B", count as f64 / 1e9)
        } else if count >= 1_000_000 {
            format!("{:.1}M", count as f64 / 1e6)
        } else {
            format!("{:.1}K", count as f64 / 1e3)
        };
        println!(
            "| `{name}` | {} / {} / {} / {} | {} | {} | {} | {} | {count} ({human}) |",
            c.hidden_size,
            c.num_layers,
            c.num_heads,
            c.num_kv_heads,
            c.intermediate_size,
            c.vocab_size,
            if c.tie_embeddings { "yes" } else { "no" },
            c.max_seq_len
        );
    }
}
