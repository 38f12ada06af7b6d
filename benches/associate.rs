//! Association benchmark on synthetic streams: 100 stations in a 200 km box, 2000 and 500
//! events per day, 20 % false picks. Prints event- and pick-level precision, recall, F1 and
//! the association throughput (picks/s of wall time and of CPU time; generation and table
//! building are not timed), with the number of threads the associator may use.
//!
//! `cargo bench --bench associate` (one simulated day each, rayon's default thread count);
//! `ASSOC_BENCH_THREADS=2` sets the threads, `ASSOC_BENCH_HOURS=3` shortens the streams,
//! `ASSOC_BENCH_DIAG=1` lists every false event's make-up. The goal is measured on two
//! cores: `taskset -c 0,1 cargo bench --bench associate` with `ASSOC_BENCH_THREADS=2`.
//!
//! Detectable events (the recall's denominator) are scored with the default associator's bar
//! (6 picks on 4 stations) whatever the associator's settings, so settings cannot move it.

use std::time::Instant;

use eikoloc::associate::{
    score_association, synth_stream, Associator, AssociatorConfig, AssociatorOutput,
    StreamSynthConfig,
};
use eikoloc::traveltime::AnalyticModel;
use eikoloc::velocity::GradientModel;

/// CPU time of this thread, s (Linux schedstat; None elsewhere). The machine this runs on may
/// be shared, so CPU time is the steadier figure; wall time is printed too.
fn thread_cpu_s() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns * 1e-9)
}

/// CPU time of the whole process (all threads), s, from /proc/self/stat (clock ticks of 10 ms).
fn process_cpu_s() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // fields after the command name (which is in parentheses and may hold spaces)
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// The default associator's bar of a detectable event: picks, stations.
const DETECTABLE: (usize, usize) = (6, 4);

fn main() {
    if let Some(n) = std::env::var("ASSOC_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .expect("rayon pool");
    }
    let threads = rayon::current_num_threads();
    let hours: f64 = std::env::var("ASSOC_BENCH_HOURS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24.0);
    let model = AnalyticModel::new(GradientModel::new(0.0, 5.5, 3.2, 0.03, 0.018).expect("model"));
    for rate in [2000.0, 500.0] {
        let cfg = StreamSynthConfig {
            events_per_day: rate,
            duration_s: hours * 3600.0,
            seed: 7,
            ..Default::default()
        };
        let t_gen = Instant::now();
        let stream = synth_stream(&cfg, &model).expect("synthesis");
        let gen_s = t_gen.elapsed().as_secs_f64();
        let picks = stream.assoc_picks();
        let t_build = Instant::now();
        let mut acfg = AssociatorConfig::default();
        if let Ok(v) = std::env::var("ASSOC_VOTE_STATIONS") {
            acfg.vote_stations = v.parse().expect("ASSOC_VOTE_STATIONS");
        }
        let mut assoc =
            Associator::new(&stream.stations, &model, acfg.clone()).expect("associator");
        let build_s = t_build.elapsed().as_secs_f64();
        let cpu0 = thread_cpu_s();
        let pcpu0 = process_cpu_s();
        let t0 = Instant::now();
        let mut closed: Vec<Vec<u64>> = Vec::new();
        let handle = |outs: Vec<AssociatorOutput>, closed: &mut Vec<Vec<u64>>| {
            for o in outs {
                if let AssociatorOutput::EventClosed { picks, .. } = o {
                    closed.push(picks.iter().map(|p| p.pick.id).collect());
                }
            }
        };
        for p in &picks {
            let outs = assoc.push(*p);
            handle(outs, &mut closed);
        }
        let outs = assoc.flush();
        handle(outs, &mut closed);
        let assoc_s = t0.elapsed().as_secs_f64();
        let cpu_s = thread_cpu_s().zip(cpu0).map(|(b, a)| b - a);
        let pcpu_s = process_cpu_s().zip(pcpu0).map(|(b, a)| b - a);
        let s = score_association(&stream.truth(), &closed, DETECTABLE.0, DETECTABLE.1);
        println!(
            "rate {rate:.0}/day, {hours} h: {} events, {} picks ({} false), {} stations; generated in {gen_s:.2} s, tables in {build_s:.2} s",
            stream.events.len(),
            picks.len(),
            stream.n_false(),
            stream.stations.len()
        );
        println!(
            "  grid {:?} nodes, vote tolerance P/S {:.2}/{:.2} s, decision delay {:.1} s",
            assoc.grid().n,
            assoc.vote_tolerance_s()[0],
            assoc.vote_tolerance_s()[1],
            assoc.decision_delay_s()
        );
        println!(
            "  events: associated {}, detectable {}, detected {}, precision {:.4}, recall {:.4}, F1 {:.4}",
            s.n_associated, s.n_detectable, s.n_detected, s.event_precision, s.event_recall, s.event_f1
        );
        println!(
            "  picks:  precision {:.4}, recall {:.4}, F1 {:.4}",
            s.pick_precision, s.pick_recall, s.pick_f1
        );
        println!(
            "  throughput: {:.0} picks/s wall ({assoc_s:.2} s, {threads} threads, {} cores online)",
            picks.len() as f64 / assoc_s,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        if let (Some(c), Some(pc)) = (cpu_s, pcpu_s) {
            println!(
                "  throughput: {:.0} picks/s of the calling thread's CPU time ({c:.2} s; all threads {pc:.2} s)",
                picks.len() as f64 / c
            );
        }
        println!("  stats: {:?}", assoc.stats());
        if std::env::var("ASSOC_BENCH_DIAG").is_ok() {
            diagnose(&stream, &closed);
        }
    }
}

/// Why associated events are false: the make-up of every event whose majority true event is
/// claimed by a larger event (a split) or that has no majority (mostly false picks).
fn diagnose(stream: &eikoloc::associate::SynthStream, closed: &[Vec<u64>]) {
    use std::collections::HashMap;
    let mut best: HashMap<usize, usize> = HashMap::new();
    let mut maj: Vec<Option<(usize, usize)>> = Vec::new();
    for (i, ev) in closed.iter().enumerate() {
        let mut c: HashMap<usize, usize> = HashMap::new();
        for &id in ev {
            if let Some(e) = stream.picks[id as usize].event {
                *c.entry(e).or_default() += 1;
            }
        }
        let m = c
            .into_iter()
            .max_by_key(|&(e, n)| (n, std::cmp::Reverse(e)));
        let m = m.filter(|&(_, n)| 2 * n > ev.len());
        if let Some((e, n)) = m {
            let b = best.entry(e).or_insert(i);
            if closed[*b].len() < n || (*b != i && maj[*b].map(|x| x.1).unwrap_or(0) < n) {
                *b = i;
            }
        }
        maj.push(m);
    }
    let (mut split, mut junk) = (0, 0);
    for (i, ev) in closed.iter().enumerate() {
        let n_false = ev
            .iter()
            .filter(|&&id| stream.picks[id as usize].event.is_none())
            .count();
        let n_sta = {
            let mut s: Vec<usize> = ev
                .iter()
                .map(|&id| stream.picks[id as usize].station)
                .collect();
            s.sort_unstable();
            s.dedup();
            s.len()
        };
        let n_p = ev
            .iter()
            .filter(|&&id| stream.picks[id as usize].phase == eikoloc::domain::Phase::P)
            .count();
        match maj[i] {
            Some((e, _)) if best[&e] == i => {}
            Some((e, n)) => {
                split += 1;
                println!("    split: {} picks ({n} of event {e}, {n_false} false), {n_sta} stations, {n_p} P", ev.len());
            }
            None => {
                junk += 1;
                println!(
                    "    junk: {} picks ({n_false} false), {n_sta} stations, {n_p} P",
                    ev.len()
                );
            }
        }
    }
    println!("  false events: {split} splits, {junk} without a majority event");
}
