//! The scenario: build the network overlay by joins, measure routing, run
//! discovery on every box, fall back to the coverage overlay, fail 10% of
//! the boxes at once and watch the repair.

use std::time::Instant;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use pastiche_core::discovery::{self, Candidate, Fingerprint, Goal, Sweep};
use pastiche_core::identity::NodeId;
use pastiche_core::overlay::ring;
use pastiche_core::overlay::{Config, Event, Node};
use pastiche_core::wire::overlay::OverlayId;

use crate::engine::{Engine, HostRef, Ix, COVERAGE_BIT};
use crate::world;

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Boxes.
    pub nodes: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// chunkIds per fingerprint.
    pub fingerprint: usize,
    /// Buddies wanted.
    pub k: usize,
    /// Least coverage of a buddy, 0..=1.
    pub threshold: f64,
    /// Lookups measured for hop counts.
    pub lookups: usize,
    /// Share of boxes failing at once.
    pub fail: f64,
    /// Virtual minutes watched after the failure.
    pub fail_window_min: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 10_000,
            seed: 1,
            fingerprint: discovery::DEFAULT_FINGERPRINT,
            k: discovery::DEFAULT_BUDDIES,
            threshold: 0.4,
            lookups: 20_000,
            fail: 0.1,
            fail_window_min: 11,
        }
    }
}

/// What was measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Boxes.
    pub nodes: usize,
    /// Pastry's bound, ceil(log16 nodes).
    pub hop_bound: u32,
    /// Lookups sent.
    pub lookups: usize,
    /// Mean overlay hops of a lookup.
    pub hops_mean: f64,
    /// 99th percentile.
    pub hops_p99: u32,
    /// Most hops.
    pub hops_max: u32,
    /// Share of lookups delivered at the numerically closest node.
    pub closest_share: f64,
    /// Datagrams sent per box while joining.
    pub join_messages_per_node: f64,
    /// Boxes running a common system.
    pub common_boxes: usize,
    /// Boxes running a rare system.
    pub rare_boxes: usize,
    /// Share of common boxes whose sweep found k buddies at or above the
    /// threshold, one of them far away.
    pub common_found_k_share: f64,
    /// Share of rare boxes whose sweep found them.
    pub rare_sweep_found_k_share: f64,
    /// Share of rare boxes with k buddies at or above the threshold, one of
    /// them far away, after the coverage-overlay fallback.
    pub rare_found_k_share: f64,
    /// Share of common boxes with k buddies after the fallback.
    pub common_found_k_share_after_fallback: f64,
    /// Share of all boxes whose final selection holds a buddy far away
    /// (round trip at least 20 ms: another network).
    pub far_buddy_share: f64,
    /// The same among boxes that hold at least one buddy.
    pub far_buddy_share_of_selections: f64,
    /// Share of rare boxes whose final selection holds a far buddy.
    pub rare_far_buddy_share: f64,
    /// Mean probes a sweep sent.
    pub probes_mean: f64,
    /// Boxes that joined the coverage overlay.
    pub coverage_overlay_members: usize,
    /// Boxes failed at once.
    pub failed: usize,
    /// Share of the lookups sent in the first minute after the failure,
    /// every node's timers running (acknowledgements, rerouting, repair),
    /// that were delivered.
    pub delivered_share_after_failure: f64,
    /// Share of them delivered at the numerically closest live box.
    pub closest_share_after_failure: f64,
    /// Mean hops of those delivered.
    pub hops_mean_after_failure: f64,
    /// That minus the mean hops before the failure.
    pub extra_hops_after_failure: f64,
    /// Lookups routed again around a silent next hop, per lookup sent.
    pub reroutes_per_lookup: f64,
    /// Mean milliseconds from sending to delivery (a reroute waits for the
    /// 3 s acknowledgement timeout).
    pub delivery_ms_mean_after_failure: f64,
    /// 99th percentile of that.
    pub delivery_ms_p99_after_failure: f64,
    /// Share delivered at the closest live node after the watch window.
    pub closest_share_after_repair: f64,
    /// Mean hops after repair.
    pub hops_mean_after_repair: f64,
    /// Datagrams per live box per hour during the window (keepalives and repair).
    pub messages_per_node_per_hour: f64,
    /// Wall-clock seconds.
    pub wall_seconds: f64,
}

fn hop_bound(n: usize) -> u32 {
    let (mut hops, mut reach) = (0, 1usize);
    while reach < n {
        reach = reach.saturating_mul(16);
        hops += 1;
    }
    hops
}

/// Runs the whole scenario.
pub fn run(cfg: &SimConfig) -> Report {
    let start = Instant::now();
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let n = cfg.nodes.max(2);
    let (places, installs) = world::generate(n, &mut rng);
    let fingerprints: Vec<Vec<u8>> = installs
        .iter()
        .map(|inst| {
            let ids: Vec<_> = (0..cfg.fingerprint * 4).map(|_| inst.random_chunk(&mut rng)).collect();
            let mut uniq = ids.clone();
            uniq.sort();
            uniq.dedup();
            Fingerprint::sample(uniq, cfg.fingerprint, |m| rng.gen_range(0..m)).as_bytes().to_vec()
        })
        .collect();
    let nodes: Vec<Node<Ix>> = (0..n)
        .map(|i| {
            let id = NodeId::from_name(&format!("box{i}.site{}.example", places[i].site));
            Node::new(Config::new(OverlayId::Network), id, Ix(i as u32), rng.gen(), 0)
        })
        .collect();
    let mut eng = Engine::new(nodes, places, installs, fingerprints);
    let mut report = Report { nodes: n, hop_bound: hop_bound(n), ..Report::default() };

    // 1. Joins, in random order, each through a box of its own site if one
    //    is up, else of its region, else any.
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let mut by_site: std::collections::HashMap<u32, Vec<usize>> = Default::default();
    let mut by_region: std::collections::HashMap<u16, Vec<usize>> = Default::default();
    let mut joined: Vec<usize> = Vec::new();
    for &i in &order {
        let p = eng.places[i];
        let via = by_site
            .get(&p.site)
            .or_else(|| by_region.get(&p.region))
            .or(if joined.is_empty() { None } else { Some(&joined) })
            .map(|list| list[rng.gen_range(0..list.len())]);
        match via {
            None => eng.nodes[i].start_alone(),
            Some(v) => {
                eng.with_node(Ix(i as u32), |node, host, now| node.join(Ix(v as u32), now, &mut HostRef(host)));
                assert!(eng.drive(Ix(i as u32), |node| node.is_ready()), "box {i} never finished joining");
            }
        }
        by_site.entry(p.site).or_default().push(i);
        by_region.entry(p.region).or_default().push(i);
        joined.push(i);
    }
    eng.out.events.clear();
    eprintln!("joined {n} boxes in {:.1}s", start.elapsed().as_secs_f64());
    report.join_messages_per_node = eng.messages as f64 / n as f64;

    // 2. Lookups from random boxes to random keys.
    let (hops, closest) = lookups(&mut eng, &mut rng, cfg.lookups);
    report.lookups = hops.len();
    report.hops_mean = mean(&hops);
    report.hops_p99 = percentile(&hops, 0.99);
    report.hops_max = hops.iter().copied().max().unwrap_or(0);
    report.closest_share = closest;

    eprintln!("lookups done at {:.1}s", start.elapsed().as_secs_f64());
    // 3. The lighthouse sweep from every box.
    let goal = Goal { k: cfg.k, min_coverage_ppm: (cfg.threshold * 1e6) as u32, far_rtt_us: 20_000 };
    let mut found = vec![false; n];
    let mut chosen_of: Vec<Vec<Candidate<Ix>>> = vec![Vec::new(); n];
    let mut sweeps: Vec<Vec<Candidate<Ix>>> = vec![Vec::new(); n];
    let mut probes_total = 0usize;
    for i in 0..n {
        let mut sweep: Sweep<Ix> = Sweep::new(ring::from_value(rng.gen()), goal);
        while let Some(key) = sweep.next_key() {
            let token = eng.with_node(Ix(i as u32), |node, host, now| node.probe(key, now, &mut HostRef(host)));
            eng.settle(60_000_000);
            for (at, e) in eng.out.events.drain(..) {
                if let Event::Coverage { token: t, id, addr, matched, of, rtt_us } = e {
                    if at.index() == i && Some(t) == token {
                        sweep.record(Candidate {
                            id,
                            addr,
                            coverage_ppm: discovery::coverage_ppm(matched, of),
                            rtt_us,
                        });
                    }
                }
            }
            if sweep.satisfied() {
                break;
            }
        }
        probes_total += sweep.probes_sent();
        found[i] = sweep.satisfied();
        chosen_of[i] = sweep.select().to_vec();
        sweeps[i] = sweep.candidates().to_vec();
    }
    report.probes_mean = probes_total as f64 / n as f64;
    eprintln!("sweeps done at {:.1}s", start.elapsed().as_secs_f64());

    // 4. Boxes left short join the coverage overlay and pick from its
    //    neighbourhood set (and what the sweep found).
    let short: Vec<usize> = (0..n).filter(|&i| !found[i]).collect();
    report.coverage_overlay_members = short.len();
    let mut members: Vec<usize> = Vec::new();
    for &i in &short {
        let at = Ix(i as u32 | COVERAGE_BIT);
        let id = eng.nodes[i].id();
        eng.coverage[i] = Some(Box::new(Node::new(Config::new(OverlayId::Coverage), id, at, rng.gen(), eng.now)));
        if members.is_empty() {
            eng.coverage[i].as_deref_mut().expect("just made").start_alone();
        } else {
            let via = members[rng.gen_range(0..members.len())];
            eng.with_node(at, |node, host, now| node.join(Ix(via as u32 | COVERAGE_BIT), now, &mut HostRef(host)));
            eng.drive(at, |node| node.is_ready());
        }
        members.push(i);
    }
    eng.out.events.clear();
    let mut found_after = found.clone();
    for &i in &short {
        let node = eng.coverage[i].as_deref().expect("member");
        let mut all: Vec<Candidate<Ix>> = sweeps[i].clone();
        all.extend(discovery::candidates_from_coverage(node).map(|mut c| {
            c.addr = Ix(c.addr.0 & !COVERAGE_BIT);
            c
        }));
        let chosen = discovery::select(&all, &goal);
        found_after[i] = discovery::meets(&chosen, &goal);
        chosen_of[i] = chosen.to_vec();
    }
    let has_far: Vec<bool> = chosen_of.iter().map(|c| c.iter().any(|b| discovery::is_far(b, &goal))).collect();
    let with_buddies = chosen_of.iter().filter(|c| !c.is_empty()).count();
    report.far_buddy_share = has_far.iter().filter(|&&f| f).count() as f64 / n as f64;
    report.far_buddy_share_of_selections = has_far.iter().filter(|&&f| f).count() as f64 / with_buddies.max(1) as f64;
    let share = |rare: bool, f: &[bool]| {
        let idx: Vec<usize> = (0..n).filter(|&i| eng.installs[i].is_rare() == rare).collect();
        (idx.len(), idx.iter().filter(|&&i| f[i]).count() as f64 / idx.len().max(1) as f64)
    };
    (report.common_boxes, report.common_found_k_share) = share(false, &found);
    (report.rare_boxes, report.rare_sweep_found_k_share) = share(true, &found);
    report.rare_found_k_share = share(true, &found_after).1;
    report.common_found_k_share_after_fallback = share(false, &found_after).1;
    report.rare_far_buddy_share = share(true, &has_far).1;

    eprintln!("coverage overlay done at {:.1}s", start.elapsed().as_secs_f64());
    // 5. A tenth of the boxes fail at once; keepalives and repair run.
    let mut failed = 0;
    for i in 0..n {
        if rng.gen_bool(cfg.fail) {
            eng.alive[i] = false;
            failed += 1;
        }
    }
    report.failed = failed;
    let probe = cfg.lookups.min(5_000);
    eng.start_timers();
    let sent_before = eng.messages;
    let rerouted_before: u64 = eng.nodes.iter().map(|node| node.stats().rerouted).sum();
    let window = cfg.fail_window_min * 60_000_000;
    let until = eng.now + window;
    let during = lookups_with_timers(&mut eng, &mut rng, probe, until);
    let rerouted: u64 = eng.nodes.iter().map(|node| node.stats().rerouted).sum::<u64>() - rerouted_before;
    report.delivered_share_after_failure = during.delivered as f64 / probe.max(1) as f64;
    report.closest_share_after_failure = during.at_closest as f64 / probe.max(1) as f64;
    report.hops_mean_after_failure = mean(&during.hops);
    report.extra_hops_after_failure = report.hops_mean_after_failure - report.hops_mean;
    report.reroutes_per_lookup = rerouted as f64 / probe.max(1) as f64;
    report.delivery_ms_mean_after_failure =
        during.latency_ms.iter().sum::<f64>() / during.latency_ms.len().max(1) as f64;
    report.delivery_ms_p99_after_failure = {
        let mut l = during.latency_ms.clone();
        l.sort_by(f64::total_cmp);
        l.get(((l.len() as f64 * 0.99).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0.0)
    };
    let live = n - failed;
    report.messages_per_node_per_hour =
        (eng.messages - sent_before) as f64 / live as f64 / (cfg.fail_window_min as f64 / 60.0);
    eng.timers_on = false;
    let (hops, closest) = lookups(&mut eng, &mut rng, probe);
    report.closest_share_after_repair = closest * hops.len() as f64 / probe.max(1) as f64;
    report.hops_mean_after_repair = mean(&hops);
    report.wall_seconds = start.elapsed().as_secs_f64();
    report
}

/// Lookups sent while every node's timers run.
struct TimedLookups {
    /// Lookups delivered (the first delivery of each).
    delivered: usize,
    /// Of those, delivered at the numerically closest live box.
    at_closest: usize,
    /// Hops of each delivered lookup.
    hops: Vec<u32>,
    /// Milliseconds from sending to the first delivery.
    latency_ms: Vec<f64>,
}

/// Sends `count` lookups from random live boxes to random keys at random
/// times over the first minute, with every node's keepalive, repair and
/// acknowledgement timers running (so a silent next hop is routed around
/// as the real machines do), and runs the network until `until`.
fn lookups_with_timers(eng: &mut Engine, rng: &mut StdRng, count: usize, until: u64) -> TimedLookups {
    const TOKENS: u64 = 1 << 40;
    let sorted = live_sorted(eng);
    let live: Vec<usize> = sorted.iter().map(|&(_, i)| i).collect();
    let start = eng.now;
    let mut plan: Vec<(u64, NodeId, usize)> = (0..count)
        .map(|_| {
            (start + rng.gen_range(0..60_000_000), ring::from_value(rng.gen()), live[rng.gen_range(0..live.len())])
        })
        .collect();
    plan.sort_by_key(|p| p.0);
    let mut sent_at = vec![0u64; count];
    let mut keys = vec![NodeId([0; 16]); count];
    let mut out = TimedLookups { delivered: 0, at_closest: 0, hops: Vec::new(), latency_ms: Vec::new() };
    let mut seen = vec![false; count];
    let mut collect = |eng: &mut Engine, out: &mut TimedLookups, sent_at: &[u64], keys: &[NodeId]| {
        for (at, e) in eng.out.events.drain(..) {
            let Event::Delivered { token, hops, .. } = e else { continue };
            let Some(j) = token.checked_sub(TOKENS).map(|j| j as usize).filter(|&j| j < count) else { continue };
            if std::mem::replace(&mut seen[j], true) {
                continue; // delivered again: a lost acknowledgement
            }
            out.delivered += 1;
            out.at_closest += usize::from(at.index() == closest(&sorted, &keys[j]));
            out.hops.push(u32::from(hops));
            out.latency_ms.push(eng.now.saturating_sub(sent_at[j]) as f64 / 1000.0);
        }
    };
    for (j, &(when, key, from)) in plan.iter().enumerate() {
        eng.run_until(when);
        collect(eng, &mut out, &sent_at, &keys);
        sent_at[j] = eng.now;
        keys[j] = key;
        eng.with_node(Ix(from as u32), |node, host, _| node.lookup(key, TOKENS + j as u64, &mut HostRef(host)));
    }
    let mut t = eng.now;
    while t < until {
        t = (t + 1_000_000).min(until);
        eng.run_until(t);
        collect(eng, &mut out, &sent_at, &keys);
    }
    out
}

/// The numerically closest live box to `key`, from the sorted live ids.
fn closest(sorted: &[(u128, usize)], key: &NodeId) -> usize {
    let k = ring::value(key);
    let pos = sorted.partition_point(|&(v, _)| v < k);
    let len = sorted.len();
    let cands = [sorted[pos % len], sorted[(pos + len - 1) % len]];
    let best =
        cands.iter().min_by_key(|(v, _)| (ring::distance(&ring::from_value(*v), key), *v)).expect("two candidates");
    best.1
}

fn live_sorted(eng: &Engine) -> Vec<(u128, usize)> {
    let mut v: Vec<(u128, usize)> =
        (0..eng.nodes.len()).filter(|&i| eng.alive[i]).map(|i| (ring::value(&eng.nodes[i].id()), i)).collect();
    v.sort();
    v
}

/// Sends `count` lookups; returns the hops of those delivered and the share
/// of delivered ones that ended at the closest live box.
fn lookups(eng: &mut Engine, rng: &mut StdRng, count: usize) -> (Vec<u32>, f64) {
    let sorted = live_sorted(eng);
    let live: Vec<usize> = sorted.iter().map(|&(_, i)| i).collect();
    let mut hops = Vec::with_capacity(count);
    let mut right = 0usize;
    for token in 0..count as u64 {
        let key = ring::from_value(rng.gen());
        let from = live[rng.gen_range(0..live.len())];
        eng.with_node(Ix(from as u32), |node, host, _| node.lookup(key, token, &mut HostRef(host)));
        eng.settle(60_000_000);
        for (at, e) in eng.out.events.drain(..) {
            if let Event::Delivered { token: t, hops: h, .. } = e {
                if t == token {
                    hops.push(u32::from(h));
                    right += usize::from(at.index() == closest(&sorted, &key));
                }
            }
        }
    }
    let share = right as f64 / hops.len().max(1) as f64;
    (hops, share)
}

fn mean(v: &[u32]) -> f64 {
    v.iter().map(|&h| f64::from(h)).sum::<f64>() / v.len().max(1) as f64
}

fn percentile(v: &[u32], q: f64) -> u32 {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.get(((s.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0)
}
