//! `pastiche-sim`: runs the overlay and discovery scenario and prints what
//! it measured (`--json`: one JSON object).

use clap::Parser;
use pastiche_sim::{run, SimConfig};

/// Simulates Pastiche's overlays and buddy discovery over a synthetic network.
#[derive(Parser)]
struct Args {
    /// Boxes in the network.
    #[arg(long, default_value_t = 10_000)]
    nodes: usize,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// chunkIds per fingerprint.
    #[arg(long, default_value_t = 32)]
    fingerprint: usize,
    /// Buddies wanted.
    #[arg(long, default_value_t = 3)]
    k: usize,
    /// Least coverage of a buddy (0..=1).
    #[arg(long, default_value_t = 0.4)]
    threshold: f64,
    /// Lookups measured for hop counts.
    #[arg(long, default_value_t = 20_000)]
    lookups: usize,
    /// Share of boxes failing at once.
    #[arg(long, default_value_t = 0.1)]
    fail: f64,
    /// Virtual minutes watched after the failure.
    #[arg(long, default_value_t = 11)]
    fail_window_min: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

fn main() {
    let a = Args::parse();
    let cfg = SimConfig {
        nodes: a.nodes,
        seed: a.seed,
        fingerprint: a.fingerprint,
        k: a.k,
        threshold: a.threshold,
        lookups: a.lookups,
        fail: a.fail,
        fail_window_min: a.fail_window_min,
    };
    let r = run(&cfg);
    let json = serde_json::json!({
        "nodes": r.nodes,
        "hop_bound": r.hop_bound,
        "lookups": r.lookups,
        "hops_mean": r.hops_mean,
        "hops_p99": r.hops_p99,
        "hops_max": r.hops_max,
        "closest_share": r.closest_share,
        "join_messages_per_node": r.join_messages_per_node,
        "common_boxes": r.common_boxes,
        "rare_boxes": r.rare_boxes,
        "threshold": cfg.threshold,
        "k": cfg.k,
        "fingerprint": cfg.fingerprint,
        "common_found_k_share": r.common_found_k_share,
        "rare_sweep_found_k_share": r.rare_sweep_found_k_share,
        "rare_found_k_share": r.rare_found_k_share,
        "common_found_k_share_after_fallback": r.common_found_k_share_after_fallback,
        "far_buddy_share": r.far_buddy_share,
        "far_buddy_share_of_selections": r.far_buddy_share_of_selections,
        "rare_far_buddy_share": r.rare_far_buddy_share,
        "probes_mean": r.probes_mean,
        "coverage_overlay_members": r.coverage_overlay_members,
        "failed": r.failed,
        "delivered_share_after_failure": r.delivered_share_after_failure,
        "closest_share_after_failure": r.closest_share_after_failure,
        "hops_mean_after_failure": r.hops_mean_after_failure,
        "extra_hops_after_failure": r.extra_hops_after_failure,
        "reroutes_per_lookup": r.reroutes_per_lookup,
        "delivery_ms_mean_after_failure": r.delivery_ms_mean_after_failure,
        "delivery_ms_p99_after_failure": r.delivery_ms_p99_after_failure,
        "closest_share_after_repair": r.closest_share_after_repair,
        "hops_mean_after_repair": r.hops_mean_after_repair,
        "messages_per_node_per_hour": r.messages_per_node_per_hour,
        "wall_seconds": r.wall_seconds,
    });
    if a.json {
        println!("{json}");
    } else {
        println!("{}", serde_json::to_string_pretty(&json).expect("a JSON value prints"));
    }
}
