//! Robustness of the locator: bad input is counted per event and never stops the others; one
//! wild pick moves the hypocentre by less than its reported uncertainty.

use eikoloc::domain::time::add_seconds;
use eikoloc::domain::{parse_utc, GeoPoint, LocalFrame, LocalPoint, Phase, Pick, StationCode};
use eikoloc::locate::event::locate_picks;
use eikoloc::locate::{LocateConfig, LocateError, SearchBox};
use eikoloc::traveltime::{AnalyticModel, TraveltimeModel};
use eikoloc::velocity::GradientModel;

fn stations() -> Vec<(StationCode, LocalPoint)> {
    (0..10)
        .map(|k| {
            let a = k as f64 * 36f64.to_radians();
            let r = if k % 2 == 0 { 30.0 } else { 12.0 };
            (
                StationCode::new("XX", &format!("S{k}")),
                LocalPoint::new(r * a.sin(), r * a.cos(), -0.3),
            )
        })
        .collect()
}

fn model() -> AnalyticModel {
    AnalyticModel::new(GradientModel::new(0.0, 5.0, 2.9, 0.05, 0.03).unwrap())
}

/// Noise-free picks of an event at `truth` with origin time `t0`.
fn picks_for(truth: [f64; 3], sts: &[(StationCode, LocalPoint)]) -> Vec<Pick> {
    let t0 = parse_utc("2021-05-01T12:00:00Z").unwrap();
    let m = model();
    let mut v = Vec::new();
    for (code, pos) in sts {
        for ph in Phase::ALL {
            let tt = m
                .traveltime_s(ph, LocalPoint::from_array(truth), *pos)
                .unwrap();
            v.push(Pick::new(
                code.clone(),
                ph,
                add_seconds(&t0, tt),
                if ph == Phase::P { 0.05 } else { 0.1 },
            ));
        }
    }
    v
}

fn bbox() -> SearchBox {
    SearchBox {
        x_min_km: -60.0,
        x_max_km: 60.0,
        y_min_km: -60.0,
        y_max_km: 60.0,
        z_min_km: -0.3,
        z_max_km: 40.0,
    }
}

fn run(picks: &[Pick]) -> eikoloc::locate::event::EventOutcome {
    let sts = stations();
    let pos = |n: &str, s: &str| {
        sts.iter()
            .find(|(c, _)| c.network == n && c.station == s)
            .map(|(_, p)| *p)
    };
    let frame = LocalFrame::new(GeoPoint::new(35.0, -117.0).unwrap());
    // noise-free picks from the locator's own model: the pick sigmas alone, no model-error
    // term (which would widen the uncertainty the wild pick is measured against)
    let config = LocateConfig {
        n_particles: 48,
        mh_steps: 10,
        ..LocateConfig::known_noise()
    };
    locate_picks(
        &model(),
        &pos,
        &frame,
        picks,
        &bbox(),
        &config,
        300.0,
        1,
        "e/1".into(),
    )
}

#[test]
fn bad_input_is_counted_and_the_event_still_located() {
    let truth = [3.0, -4.0, 8.0];
    let mut picks = picks_for(truth, &stations());
    let t = picks[0].time;
    picks.push(Pick::new(StationCode::new("ZZ", "NOPE"), Phase::P, t, 0.05)); // unknown station
    picks.push(Pick::new(
        picks[2].station.clone(),
        Phase::P,
        add_seconds(&picks[2].time, 0.3),
        0.05,
    )); // duplicate
    picks.push(Pick::new(
        picks[4].station.clone(),
        Phase::P,
        add_seconds(&t, 3.0 * 3600.0),
        0.05,
    )); // hours apart (also a duplicate P)
        // S before P at station 6: replace its S by a time before its P
    let p6 = picks
        .iter()
        .position(|p| p.station.station == "S6" && p.phase == Phase::S)
        .unwrap();
    picks[p6].time = add_seconds(&picks[p6 - 1].time, -0.5);
    let o = run(&picks);
    assert_eq!(o.problems.unknown_station, 1);
    assert_eq!(o.problems.duplicate, 2);
    assert_eq!(o.problems.s_before_p, 1);
    let (sum, post) = o.result.expect("located despite bad picks");
    let d = ((post.mean_km[0] - truth[0]).powi(2) + (post.mean_km[1] - truth[1]).powi(2)).sqrt();
    assert!(
        d < 0.5 && (post.mean_km[2] - truth[2]).abs() < 1.0,
        "{:?}",
        post.mean_km
    );
    assert_eq!(sum.origin.arrivals.len(), 19);
}

#[test]
fn picks_hours_apart_are_set_aside() {
    let truth = [3.0, -4.0, 8.0];
    let mut picks = picks_for(truth, &stations());
    picks[5].time = add_seconds(&picks[5].time, 2.0 * 3600.0);
    let o = run(&picks);
    assert_eq!(o.problems.far_in_time, 1);
    assert!(o.result.is_ok());
}

#[test]
fn too_few_picks_is_an_error_not_a_panic() {
    let picks = picks_for([0.0, 0.0, 5.0], &stations()[..2]);
    let o = run(&picks);
    assert!(
        matches!(o.result, Err(LocateError::TooFewPicks { .. })),
        "{:?}",
        o.result.err()
    );
    assert!(matches!(
        run(&[]).result,
        Err(LocateError::TooFewPicks { .. })
    ));
}

#[test]
fn one_wild_pick_moves_the_event_less_than_its_uncertainty() {
    let truth = [5.0, 2.0, 10.0];
    let clean = picks_for(truth, &stations());
    let a = run(&clean).result.unwrap().1;
    for (k, shift) in [(0usize, 2.0), (7, -1.5), (13, 3.0)] {
        let mut wild = clean.clone();
        wild[k].time = add_seconds(&wild[k].time, shift);
        let (sum, b) = run(&wild).result.unwrap();
        let dh =
            ((a.mean_km[0] - b.mean_km[0]).powi(2) + (a.mean_km[1] - b.mean_km[1]).powi(2)).sqrt();
        let dz = (a.mean_km[2] - b.mean_km[2]).abs();
        let h = sum.origin.uncertainty.horizontal_95.major_km;
        let z = sum.origin.uncertainty.depth_95_km;
        assert!(dh < h && dz < z, "pick {k} shifted {shift} s moved the event {dh:.3} km / {dz:.3} km (95 %: {h:.3} / {z:.3})");
        let flagged = sum
            .origin
            .arrivals
            .iter()
            .find(|x| x.pick_id == wild[k].id)
            .unwrap();
        assert!(flagged.outlier && flagged.weight < 0.5, "{flagged:?}");
    }
}
