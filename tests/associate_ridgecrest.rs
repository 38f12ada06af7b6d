//! Association of the Ridgecrest synthetic set (../shared/data/ridgecrest_synthetic: 1000
//! events, 31,740 picks made in a 3-D model, 27 stations), located with its 1-D model through
//! the exact layered solver. Its picks carry event ids, so the association is scored.

use std::collections::HashMap;
use std::path::Path;

use eikoloc::associate::{
    score_association, AssocPick, Associator, AssociatorConfig, AssociatorOutput, TruthPick,
};
use eikoloc::config::ResolvedStationConfig;
use eikoloc::domain::{parse_utc, time::seconds_between, Phase};
use eikoloc::traveltime::LayeredExact;

#[test]
fn ridgecrest_synthetic_picks_are_associated_into_99_percent_of_events() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = ResolvedStationConfig::load(&root.join("station-configs/ridgecrest"))
        .expect("ridgecrest config");
    let picks_file = root.join("../shared/data/ridgecrest_synthetic/picks.csv");
    let mut rdr = csv::Reader::from_path(&picks_file).expect("picks.csv");
    let mut rows = Vec::new();
    for (line, rec) in rdr.records().enumerate() {
        let rec = rec.unwrap_or_else(|e| panic!("{}:{}: {e}", picks_file.display(), line + 2));
        let station = cfg
            .inventory
            .position(&rec[1], &rec[2])
            .expect("known station");
        let phase: Phase = rec[3].parse().expect("phase");
        let time = parse_utc(&rec[4]).expect("time");
        rows.push((rec[0].to_string(), station, phase, time));
    }
    assert_eq!(rows.len(), 31_740);
    let epoch = rows.iter().map(|r| r.3).min().unwrap();
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut picks: Vec<(AssocPick, TruthPick)> = rows
        .iter()
        .map(|(ev, station, phase, time)| {
            let n = ids.len();
            let e = *ids.entry(ev.clone()).or_insert(n);
            (
                AssocPick {
                    id: 0,
                    station: *station,
                    phase: *phase,
                    time_s: seconds_between(&epoch, time),
                },
                TruthPick {
                    event: Some(e),
                    station: *station,
                },
            )
        })
        .collect();
    picks.sort_by(|a, b| {
        a.0.time_s
            .total_cmp(&b.0.time_s)
            .then(a.0.station.cmp(&b.0.station))
    });
    for (i, p) in picks.iter_mut().enumerate() {
        p.0.id = i as u64;
    }
    let truth: Vec<TruthPick> = picks.iter().map(|p| p.1).collect();
    let model = LayeredExact::new(cfg.velocity.clone());
    // the picks come from a 3-D model and are located in 1-D: wider residual tolerances
    let acfg = AssociatorConfig {
        tolerance_p_s: 0.7,
        tolerance_s_s: 1.1,
        tolerance_relative: 0.03,
        ..Default::default()
    };
    let mut a = Associator::new(&cfg.station_positions, &model, acfg.clone()).expect("associator");
    let mut events: Vec<Vec<u64>> = Vec::new();
    let mut take = |outs: Vec<AssociatorOutput>| {
        for o in outs {
            if let AssociatorOutput::EventClosed { picks, .. } = o {
                events.push(picks.iter().map(|p| p.pick.id).collect());
            }
        }
    };
    for p in &picks {
        take(a.push(p.0));
    }
    take(a.flush());
    let s = score_association(&truth, &events, acfg.min_picks, acfg.min_stations);
    println!("{s:?}\n{:?}", a.stats());
    assert!(s.n_detectable >= 990, "{s:?}");
    assert!(
        s.n_detected as f64 >= 0.99 * ids.len() as f64,
        "events found: {s:?}"
    );
    // measured 2026-11: precision 0.891 (about 120 extra small events built from picks the
    // 1-D model fits badly; 0.848 before nodes counted only their 20 nearest stations' votes),
    // pick precision 0.962, pick recall 0.948
    assert!(s.event_precision >= 0.87, "{s:?}");
    assert!(s.pick_precision >= 0.9 && s.pick_recall >= 0.9, "{s:?}");
}
