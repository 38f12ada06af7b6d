//! Streaming association: accuracy on a seeded synthetic stream, separation of overlapping
//! events, late-pick absorption, hostile input, determinism.

use eikoloc::associate::{
    score_association, synth_stream, AssocPick, Associator, AssociatorConfig, AssociatorOutput,
    StreamSynthConfig,
};
use eikoloc::domain::{LocalPoint, Phase};
use eikoloc::traveltime::{AnalyticModel, TraveltimeModel};
use eikoloc::velocity::GradientModel;

fn model() -> AnalyticModel {
    AnalyticModel::new(GradientModel::new(0.0, 5.5, 3.2, 0.03, 0.018).unwrap())
}

/// A 6 x 5 station grid over 100 x 80 km.
fn stations() -> Vec<LocalPoint> {
    let mut v = Vec::new();
    for iy in 0..5 {
        for ix in 0..6 {
            v.push(LocalPoint::new(ix as f64 * 20.0, iy as f64 * 20.0, -0.2));
        }
    }
    v
}

/// Every station's P and S pick of an event at `hyp` with origin time `t0_s`, ids from `id0`.
fn event_picks(
    m: &AnalyticModel,
    st: &[LocalPoint],
    hyp: LocalPoint,
    t0_s: f64,
    id0: u64,
) -> Vec<AssocPick> {
    let mut out = Vec::new();
    for (s, p) in st.iter().enumerate() {
        for ph in Phase::ALL {
            let t = t0_s + m.traveltime_s(ph, hyp, *p).unwrap();
            out.push(AssocPick {
                id: id0 + out.len() as u64,
                station: s,
                phase: ph,
                time_s: t,
            });
        }
    }
    out
}

fn run(a: &mut Associator, picks: &[AssocPick]) -> Vec<AssociatorOutput> {
    let mut out = Vec::new();
    for p in picks {
        out.extend(a.push(*p));
    }
    out.extend(a.flush());
    out
}

fn closed(outs: &[AssociatorOutput]) -> Vec<(f64, LocalPoint, Vec<u64>)> {
    outs.iter()
        .filter_map(|o| match o {
            AssociatorOutput::EventClosed {
                origin_time_s,
                hypocentre,
                picks,
                ..
            } => Some((
                *origin_time_s,
                *hypocentre,
                picks.iter().map(|p| p.pick.id).collect(),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn seeded_stream_of_200_events_with_20_percent_false_picks_reaches_f1_095() {
    let m = model();
    let cfg = StreamSynthConfig {
        seed: 11,
        n_stations: 20,
        width_km: 70.0,
        events_per_day: 2000.0,
        duration_s: 8640.0,
        false_pick_fraction: 0.2,
        reach_min_km: 15.0,
        reach_max_km: 100.0,
        ..Default::default()
    };
    let stream = synth_stream(&cfg, &m).unwrap();
    assert!(
        (150..250).contains(&stream.events.len()),
        "{} events",
        stream.events.len()
    );
    let frac = stream.n_false() as f64 / stream.picks.len() as f64;
    assert!((frac - 0.2).abs() < 0.01, "false fraction {frac}");
    let acfg = AssociatorConfig::default();
    let mut a = Associator::new(&stream.stations, &m, acfg.clone()).unwrap();
    let outs = run(&mut a, &stream.assoc_picks());
    let events: Vec<Vec<u64>> = closed(&outs).into_iter().map(|e| e.2).collect();
    let s = score_association(&stream.truth(), &events, acfg.min_picks, acfg.min_stations);
    println!("{s:?}\n{:?}", a.stats());
    assert!(s.n_detectable > 100, "{s:?}");
    assert!(s.event_f1 >= 0.95, "event F1 {s:?}");
    assert!(s.pick_f1 >= 0.95, "pick F1 {s:?}");
    assert_eq!(a.stats().events_opened, a.stats().events_closed);
}

#[test]
fn two_events_three_seconds_apart_at_different_places_are_separated() {
    let m = model();
    let st = stations();
    let a_hyp = LocalPoint::new(15.0, 20.0, 8.0);
    let b_hyp = LocalPoint::new(85.0, 65.0, 12.0);
    let mut picks = event_picks(&m, &st, a_hyp, 1000.0, 0);
    let n_a = picks.len() as u64;
    picks.extend(event_picks(&m, &st, b_hyp, 1003.0, n_a));
    picks.sort_by(|x, y| x.time_s.total_cmp(&y.time_s));
    let mut a = Associator::new(&st, &m, AssociatorConfig::default()).unwrap();
    let ev = closed(&run(&mut a, &picks));
    assert_eq!(ev.len(), 2, "{ev:?}");
    for (t0, hyp, ids) in &ev {
        let from_a = ids.iter().filter(|&&i| i < n_a).count();
        let (truth, t_true, n_own) = if from_a * 2 > ids.len() {
            (a_hyp, 1000.0, from_a)
        } else {
            (b_hyp, 1003.0, ids.len() - from_a)
        };
        // every pick of each event, and nothing of the other, except where the two events'
        // picks at one station and phase coincide (station 26's P arrivals are 0.2 ms
        // apart here): such a pair cannot be told apart and may go either way
        let by_id = |i: u64| picks.iter().find(|p| p.id == i).unwrap();
        let foreign: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|&i| (i < n_a) != (from_a * 2 > ids.len()))
            .collect();
        for &i in &foreign {
            let p = by_id(i);
            let twin = picks.iter().any(|q| {
                q.id != p.id
                    && q.station == p.station
                    && q.phase == p.phase
                    && (q.time_s - p.time_s).abs() < 0.005
            });
            assert!(twin, "mixed event {ids:?}: pick {p:?} of the other event");
        }
        assert_eq!(n_own + foreign.len(), ids.len());
        assert!(ids.len() as u64 >= n_a - 2, "{} of {n_a} picks", ids.len());
        let d = ((hyp.x_km - truth.x_km).powi(2)
            + (hyp.y_km - truth.y_km).powi(2)
            + (hyp.z_km - truth.z_km).powi(2))
        .sqrt();
        assert!(d < 2.0, "hypocentre {hyp:?} vs {truth:?}");
        assert!((t0 - t_true).abs() < 0.3, "origin {t0} vs {t_true}");
    }
}

#[test]
fn a_late_pick_is_absorbed_by_the_open_event() {
    let m = model();
    let st = stations();
    let hyp = LocalPoint::new(50.0, 40.0, 10.0);
    let mut picks = event_picks(&m, &st, hyp, 500.0, 0);
    picks.sort_by(|x, y| x.time_s.total_cmp(&y.time_s));
    // the S pick of the farthest station arrives late (after the event has opened)
    let late = picks.pop().unwrap();
    assert_eq!(late.phase, Phase::S);
    // decide early (8 s after the origin-time bin), so the event opens from its first picks
    let cfg = AssociatorConfig {
        decision_delay_s: Some(8.0),
        ..Default::default()
    };
    let mut a = Associator::new(&st, &m, cfg).unwrap();
    let mut outs = Vec::new();
    for p in &picks {
        outs.extend(a.push(*p));
    }
    let opened: Vec<&String> = outs
        .iter()
        .filter_map(|o| {
            if let AssociatorOutput::EventOpened { id, .. } = o {
                Some(id)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(opened.len(), 1, "{outs:?}");
    assert_eq!(a.open_events(), 1, "the event must still be open");
    let absorbed_before = a.stats().absorbed_late;
    let upd = a.push(late);
    let absorbed = upd.iter().any(|o| matches!(o, AssociatorOutput::EventUpdated { id, new_picks, .. } if id == opened[0] && new_picks.iter().any(|p| p.pick.id == late.id)));
    assert!(absorbed, "{upd:?}");
    assert_eq!(a.stats().absorbed_late, absorbed_before + 1);
    let fin = a.flush();
    let ev = closed(&fin);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].2.len(), picks.len() + 1);
}

#[test]
fn hostile_input_is_counted_not_fatal() {
    let m = model();
    let st = stations();
    let cfg = AssociatorConfig {
        max_station_picks: 50,
        max_pool_picks: 1000,
        ..Default::default()
    };
    let mut a = Associator::new(&st, &m, cfg).unwrap();
    assert!(a
        .push(AssocPick {
            id: 0,
            station: 0,
            phase: Phase::P,
            time_s: f64::NAN
        })
        .is_empty());
    assert!(a
        .push(AssocPick {
            id: 1,
            station: 0,
            phase: Phase::P,
            time_s: f64::INFINITY
        })
        .is_empty());
    assert!(a
        .push(AssocPick {
            id: 2,
            station: 999,
            phase: Phase::P,
            time_s: 10.0
        })
        .is_empty());
    assert_eq!(a.stats().rejected_non_finite, 2);
    assert_eq!(a.stats().rejected_unknown_station, 1);
    // a burst: 100,000 picks at one instant, spread over all stations and both phases
    let n_burst = 100_000u64;
    for i in 0..n_burst {
        let p = AssocPick {
            id: 10 + i,
            station: (i as usize) % st.len(),
            phase: Phase::ALL[(i as usize / st.len()) % 2],
            time_s: 100.0,
        };
        a.push(p);
        assert!(a.pool_len() <= 1000);
    }
    assert!(
        a.stats().dropped_capacity >= n_burst - 1000,
        "{:?}",
        a.stats()
    );
    // a real event after the burst is still found
    let hyp = LocalPoint::new(40.0, 50.0, 9.0);
    let mut picks = event_picks(&m, &st, hyp, 400.0, 1_000_000);
    picks.sort_by(|x, y| x.time_s.total_cmp(&y.time_s));
    let ev = closed(&run(&mut a, &picks));
    let real: Vec<_> = ev
        .iter()
        .filter(|e| e.2.iter().filter(|&&i| i >= 1_000_000).count() * 2 > e.2.len())
        .collect();
    assert_eq!(real.len(), 1, "{ev:?}");
    assert!(real[0].2.len() >= picks.len() - 2);
}

#[test]
fn same_input_same_output() {
    let m = model();
    let cfg = StreamSynthConfig {
        seed: 3,
        n_stations: 15,
        width_km: 80.0,
        duration_s: 1800.0,
        ..Default::default()
    };
    let stream = synth_stream(&cfg, &m).unwrap();
    let picks = stream.assoc_picks();
    let mut a = Associator::new(&stream.stations, &m, AssociatorConfig::default()).unwrap();
    let mut b = Associator::new(&stream.stations, &m, AssociatorConfig::default()).unwrap();
    let oa = run(&mut a, &picks);
    let ob = run(&mut b, &picks);
    assert!(!oa.is_empty());
    assert_eq!(oa, ob);
}

#[test]
fn bad_configuration_and_stations_are_errors() {
    let m = model();
    assert!(Associator::new(&[], &m, AssociatorConfig::default()).is_err());
    assert!(Associator::new(
        &[LocalPoint::new(f64::NAN, 0.0, 0.0)],
        &m,
        AssociatorConfig::default()
    )
    .is_err());
    let bad = AssociatorConfig {
        grid_spacing_km: 0.0,
        ..Default::default()
    };
    assert!(Associator::new(&stations(), &m, bad).is_err());
    let bad = AssociatorConfig {
        grid_spacing_km: 0.01,
        ..Default::default()
    };
    assert!(
        Associator::new(&stations(), &m, bad).is_err(),
        "a grid too large to tabulate is refused"
    );
}
