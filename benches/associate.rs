//! Association benchmark on synthetic streams: 100 stations in a 200 km box, 2000 and 500
//! events per day, 20 % false picks. Prints event- and pick-level precision, recall, F1 and
//! the association throughput (picks/s, one thread; generation is not timed).
//!
//! `cargo bench --bench associate` (one simulated day each); `ASSOC_BENCH_HOURS=3` shortens it.

use std::time::Instant;

use eikoloc::associate::{score_association, synth_stream, AssociatorConfig, AssociatorOutput, Associator, StreamSynthConfig};
use eikoloc::traveltime::AnalyticModel;
use eikoloc::velocity::GradientModel;

fn main() {
    let hours: f64 = std::env::var("ASSOC_BENCH_HOURS").ok().and_then(|v| v.parse().ok()).unwrap_or(24.0);
    let model = AnalyticModel::new(GradientModel::new(0.0, 5.5, 3.2, 0.03, 0.018).expect("model"));
    for rate in [2000.0, 500.0] {
        let cfg = StreamSynthConfig { events_per_day: rate, duration_s: hours * 3600.0, seed: 7, ..Default::default() };
        let t_gen = Instant::now();
        let stream = synth_stream(&cfg, &model).expect("synthesis");
        let gen_s = t_gen.elapsed().as_secs_f64();
        let picks = stream.assoc_picks();
        let t_build = Instant::now();
        let acfg = AssociatorConfig::default();
        let mut assoc = Associator::new(&stream.stations, &model, acfg.clone()).expect("associator");
        let build_s = t_build.elapsed().as_secs_f64();
        let t0 = Instant::now();
        let mut closed: Vec<Vec<u64>> = Vec::new();
        let mut handle = |outs: Vec<AssociatorOutput>, closed: &mut Vec<Vec<u64>>| {
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
        let s = score_association(&stream.truth(), &closed, acfg.min_picks, acfg.min_stations);
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
        println!("  picks:  precision {:.4}, recall {:.4}, F1 {:.4}", s.pick_precision, s.pick_recall, s.pick_f1);
        println!("  throughput: {:.0} picks/s ({assoc_s:.2} s, one thread)", picks.len() as f64 / assoc_s);
        println!("  stats: {:?}", assoc.stats());
    }
}
