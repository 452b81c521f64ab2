//! The simulator at 1,000 boxes: the structural properties the scenario
//! must keep at any size (timings are for the benchmark, not here).

use pastiche_sim::{run, SimConfig};

#[test]
fn a_thousand_boxes_route_within_the_bound_to_the_closest_node_and_find_buddies() {
    let cfg = SimConfig { nodes: 1_000, lookups: 2_000, fail_window_min: 3, ..SimConfig::default() };
    let r = run(&cfg);
    assert_eq!(r.lookups, 2_000, "every lookup in a healthy network is delivered");
    assert_eq!(r.closest_share, 1.0, "every lookup ends at the numerically closest box");
    assert_eq!(r.hop_bound, 3);
    assert!(r.hops_p99 <= r.hop_bound, "p99 {} hops", r.hops_p99);
    assert!(r.hops_max <= r.hop_bound + 2, "max {} hops", r.hops_max);
    assert!(r.hops_mean <= f64::from(r.hop_bound), "mean {} hops", r.hops_mean);
    // Most common installs find k buddies by the sweep; the fallback helps rare ones.
    assert!(r.common_found_k_share > 0.7, "{}", r.common_found_k_share);
    assert!(r.rare_found_k_share > r.rare_sweep_found_k_share);
    assert!(r.rare_found_k_share > 0.9, "{}", r.rare_found_k_share);
    // Every selection with a well-covering far candidate keeps a far buddy.
    assert!(r.far_buddy_share_of_selections > 0.95, "{}", r.far_buddy_share_of_selections);
    // Lookups sent right after a tenth of the boxes fail, timers running,
    // are routed around the silent hops and all end at the closest live box.
    assert!(r.reroutes_per_lookup > 0.0);
    assert_eq!(r.delivered_share_after_failure, 1.0);
    assert_eq!(r.closest_share_after_failure, 1.0);
    // After a tenth of the boxes fail and the leaf sets are repaired, every
    // lookup but a few through not-yet-swept table entries ends at the
    // closest live box.
    assert!(r.failed > 50);
    assert!(r.closest_share_after_repair > 0.9, "{}", r.closest_share_after_repair);
}
