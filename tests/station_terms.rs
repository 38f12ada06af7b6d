//! Station terms against independent truth: synthetic events (src/synth.rs) whose picks carry
//! known per-station delays. Static terms must recover static delays and, applied in the
//! relocation loop, shrink the location error; with delays that vary with the source
//! position, source-specific terms (SSST) must beat static ones.

use eikoloc::domain::time::add_seconds;
use eikoloc::domain::{parse_utc, GeoPoint, LocalFrame, LocalPoint, Phase, Pick, StationCode};
use eikoloc::locate::event::locate_picks_corrected;
use eikoloc::locate::station_terms::{
    relocate_with_terms, LocatedEvent, StationTerms, TermsConfig, TermsKind,
};
use eikoloc::locate::{LocateConfig, SearchBox};
use eikoloc::synth::{generate, NoiseKind, SynthConfig, SynthEvent};
use eikoloc::traveltime::{AnalyticModel, TraveltimeModel};
use eikoloc::velocity::GradientModel;

fn stations() -> Vec<(StationCode, LocalPoint)> {
    (0..18)
        .map(|k| {
            let a = (k as f64 * 47.0 + 11.0).to_radians();
            let r = [9.0, 22.0, 38.0][k % 3];
            (
                StationCode::new("XX", &format!("S{k:02}")),
                LocalPoint::new(r * a.sin(), r * a.cos(), -0.2 - 0.05 * (k % 4) as f64),
            )
        })
        .collect()
}

fn model() -> AnalyticModel {
    AnalyticModel::new(GradientModel::new(0.0, 5.0, 2.9, 0.05, 0.03).unwrap())
}

fn frame() -> LocalFrame {
    LocalFrame::new(GeoPoint::new(35.0, -117.0).unwrap())
}

fn bbox() -> SearchBox {
    SearchBox {
        x_min_km: -60.0,
        x_max_km: 60.0,
        y_min_km: -60.0,
        y_max_km: 60.0,
        z_min_km: -0.4,
        z_max_km: 30.0,
    }
}

/// Static P delay of station `k`, s (a fixed, irregular pattern of +-0.3 s); S is 1.7 times it.
fn static_delay_s(k: usize, phase: Phase) -> f64 {
    let d = 0.3 * (2.3 * k as f64 + 0.7).sin();
    match phase {
        Phase::P => d,
        Phase::S => 1.7 * d,
    }
}

fn events(n: usize, seed: u64) -> Vec<SynthEvent> {
    let sts: Vec<LocalPoint> = stations().into_iter().map(|s| s.1).collect();
    generate(
        &model(),
        &sts,
        &SynthConfig {
            n_events: n,
            noise: NoiseKind::Gaussian,
            p_sigma_s: 0.03,
            s_sigma_s: 0.06,
            p_missing: 0.1,
            s_missing: 0.3,
            x_range_km: (-15.0, 15.0),
            y_range_km: (-15.0, 15.0),
            z_range_km: (3.0, 15.0),
            seed,
            ..Default::default()
        },
    )
    .unwrap()
}

/// Picks of every event with `delay(station index, phase, true hypocentre)` added.
fn picks(evs: &[SynthEvent], delay: &dyn Fn(usize, Phase, [f64; 3]) -> f64) -> Vec<Vec<Pick>> {
    let sts = stations();
    let t_ref = parse_utc("2022-03-01T00:00:00Z").unwrap();
    evs.iter()
        .enumerate()
        .map(|(i, e)| {
            let t0 = add_seconds(&t_ref, 600.0 * i as f64);
            e.picks
                .iter()
                .map(|p| {
                    let t = p.t_s + delay(p.station, p.phase, e.truth_km);
                    Pick::new(
                        sts[p.station].0.clone(),
                        p.phase,
                        add_seconds(&t0, t),
                        p.sigma_s,
                    )
                })
                .collect()
        })
        .collect()
}

struct Run {
    /// Horizontal and depth errors of the posterior mean per located event, km.
    errors: Vec<(f64, f64)>,
    /// Error vectors (located minus true, km) per event, None where not located.
    vectors: Vec<Option<[f64; 3]>>,
    terms: Option<StationTerms>,
}

fn relocate(evs: &[SynthEvent], picks: &[Vec<Pick>], terms: Option<TermsConfig>) -> Run {
    let sts = stations();
    let pos = |n: &str, s: &str| {
        sts.iter()
            .find(|(c, _)| c.network == n && c.station == s)
            .map(|(_, p)| *p)
    };
    let f = frame();
    let m = model();
    // few particles and no Metropolis: the test is about the mean hypocentre, and fast
    // a small independent floor only: the test is about the delays the terms must recover
    let config = LocateConfig {
        n_particles: 24,
        mh_steps: 0,
        model_error_floor_s: 0.02,
        ..LocateConfig::known_noise()
    };
    let ids: Vec<String> = (0..evs.len()).map(|i| format!("ev{i}")).collect();
    let tc = terms.unwrap_or(TermsConfig {
        iterations: 0,
        ..Default::default()
    });
    let run = relocate_with_terms(&ids, &f, &tc, None, |i, corr| {
        let c = |n: &str, s: &str, p: Phase| corr.correction_s(n, s, p);
        let o = locate_picks_corrected(
            &m,
            &pos,
            &f,
            &picks[i],
            &bbox(),
            &config,
            300.0,
            i as u64,
            ids[i].clone(),
            &c,
        );
        match o.result {
            Ok((sum, post)) => (
                Some(post.mean_km),
                Some(LocatedEvent::from_origin(&ids[i], &sum.origin, &c)),
            ),
            Err(_) => (None, None),
        }
    })
    .unwrap();
    for p in &run.passes {
        println!(
            "  pass {}: {} located, median RMS {:.4} s, median |correction| {:.4} s",
            p.pass, p.located, p.median_rms_s, p.median_abs_correction_s
        );
    }
    let errors: Vec<(f64, f64)> = run
        .outcomes
        .iter()
        .zip(evs)
        .filter_map(|(m, e)| {
            m.map(|m| {
                let t = e.truth_km;
                ((m[0] - t[0]).hypot(m[1] - t[1]), (m[2] - t[2]).abs())
            })
        })
        .collect();
    let m = |i: usize| {
        median(
            errors
                .iter()
                .map(|e| if i == 0 { e.0 } else { e.1 })
                .collect(),
        )
    };
    let vectors: Vec<Option<[f64; 3]>> = run
        .outcomes
        .iter()
        .zip(evs)
        .map(|(m, e)| m.map(|m| [0, 1, 2].map(|i| m[i] - e.truth_km[i])))
        .collect();
    let mean = |i: usize| {
        let v: Vec<f64> = vectors.iter().flatten().map(|d| d[i]).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    println!(
        "  median error {:.3} km H, {:.3} km Z; mean error vector ({:.3}, {:.3}, {:.3}) km",
        m(0),
        m(1),
        mean(0),
        mean(1),
        mean(2)
    );
    Run {
        errors,
        vectors,
        terms: run.terms,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn med_err(r: &Run) -> (f64, f64) {
    (
        median(r.errors.iter().map(|e| e.0).collect()),
        median(r.errors.iter().map(|e| e.1).collect()),
    )
}

/// Median error of the separation vector of event pairs less than 5 km apart, km: the
/// relative location precision that source-specific terms are meant to improve.
fn pair_error(evs: &[SynthEvent], r: &Run) -> f64 {
    let mut v = Vec::new();
    for i in 0..evs.len() {
        for j in i + 1..evs.len() {
            let (a, b) = (evs[i].truth_km, evs[j].truth_km);
            let d = ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt();
            if d >= 5.0 {
                continue;
            }
            if let (Some(ei), Some(ej)) = (r.vectors[i], r.vectors[j]) {
                v.push(
                    ((ei[0] - ej[0]).powi(2) + (ei[1] - ej[1]).powi(2) + (ei[2] - ej[2]).powi(2))
                        .sqrt(),
                );
            }
        }
    }
    median(v)
}

#[test]
fn static_terms_recover_station_delays_and_improve_locations() {
    let evs = events(100, 7);
    let pk = picks(&evs, &|k, ph, _| static_delay_s(k, ph));
    let plain = relocate(&evs, &pk, None);
    let with = relocate(
        &evs,
        &pk,
        Some(TermsConfig {
            kind: TermsKind::Static,
            iterations: 3,
            ..Default::default()
        }),
    );
    assert_eq!(plain.errors.len(), 100);
    assert_eq!(with.errors.len(), 100);
    let Some(StationTerms::Static(t)) = &with.terms else {
        panic!("no static terms")
    };
    // Terms are unique only up to what a common change of all events trades off against: a
    // shift of the origin times (a constant per phase) and a common shift s of all
    // hypocentres (a term pattern g_k . s, g_k the station's mean traveltime gradient over
    // the events). The relocation loop keeps the common shift the delays gave the first pass
    // (no data can undo it), so compare after the least-squares fit of those 4 parameters.
    let sts = stations();
    let m = model();
    for ph in Phase::ALL {
        let mut rows = Vec::new();
        let mut rhs = Vec::new();
        for (k, (c, pos)) in sts.iter().enumerate() {
            let mut g = [0.0; 3];
            for e in &evs {
                for i in 0..3 {
                    let (mut a, mut b) = (e.truth_km, e.truth_km);
                    a[i] += 0.01;
                    b[i] -= 0.01;
                    let ta = m.traveltime_s(ph, LocalPoint::from_array(a), *pos).unwrap();
                    let tb = m.traveltime_s(ph, LocalPoint::from_array(b), *pos).unwrap();
                    g[i] += (ta - tb) / 0.02 / evs.len() as f64;
                }
            }
            rows.push([1.0, g[0], g[1], g[2]]);
            rhs.push(t.correction_s(&c.network, &c.station, ph) - static_delay_s(k, ph));
        }
        let a = nalgebra::DMatrix::from_fn(rows.len(), 4, |i, j| rows[i][j]);
        let b = nalgebra::DVector::from_vec(rhs.clone());
        let x = a.clone().svd(true, true).solve(&b, 1e-12).unwrap();
        let resid = &b - &a * &x;
        let err: Vec<f64> = resid.iter().map(|r| r.abs()).collect();
        let max = err.iter().cloned().fold(0.0, f64::max);
        let raw: Vec<f64> = rhs.iter().map(|r| r.abs()).collect();
        println!(
            "{ph}: term minus delay, raw median {:.4} s; after the origin-time and common-shift \
             fit (shift {:.3}, {:.3}, {:.3} km): median {:.4} s, max {:.4} s",
            median(raw),
            -x[1],
            -x[2],
            -x[3],
            median(err.clone()),
            max
        );
        // pick noise 0.03 s (P) / 0.06 s (S), about 90 / 70 picks per station: a term is
        // known to about 0.005 / 0.01 s; the delays themselves span +-0.3 / +-0.5 s
        let tol = if ph == Phase::P { 0.02 } else { 0.04 };
        assert!(max < tol, "{ph} term error up to {max} s");
    }
    let (h0, z0) = med_err(&plain);
    let (h1, z1) = med_err(&with);
    println!("median error without terms {h0:.3} km H / {z0:.3} km Z; with static terms {h1:.3} / {z1:.3}");
    assert!(h1 < 0.6 * h0, "horizontal {h1} vs {h0}");
    assert!(z1 < 0.8 * z0, "depth {z1} vs {z0}");
}

#[test]
fn ssst_beats_static_terms_when_delays_depend_on_the_source() {
    let evs = events(200, 11);
    // per station a static part plus a part that flips sign across the source region (e.g.
    // a slow body that rays from the west cross and rays from the east miss): static terms
    // can only take its average
    let delay = |k: usize, ph: Phase, src: [f64; 3]| {
        let a = 0.25 * (1.9 * k as f64 + 0.3).cos() * (src[0] / 15.0);
        static_delay_s(k, ph) + if ph == Phase::P { a } else { 1.7 * a }
    };
    let pk = picks(&evs, &delay);
    let stat = relocate(
        &evs,
        &pk,
        Some(TermsConfig {
            kind: TermsKind::Static,
            iterations: 2,
            ..Default::default()
        }),
    );
    let ssst = relocate(
        &evs,
        &pk,
        Some(TermsConfig {
            kind: TermsKind::Ssst,
            iterations: 4,
            k_neighbours: 100,
            min_neighbours: 5,
            radius_start_km: 40.0,
            radius_end_km: 6.0,
            ..Default::default()
        }),
    );
    let (ps, px) = (pair_error(&evs, &stat), pair_error(&evs, &ssst));
    let (hs, zs) = med_err(&stat);
    let (hx, zx) = med_err(&ssst);
    println!(
        "median error static {hs:.3} km H / {zs:.3} km Z; SSST {hx:.3} / {zx:.3}; \
         pair error (events < 5 km apart) static {ps:.3} km, SSST {px:.3} km"
    );
    // SSST sharpens relative locations (what it is for); the absolute error keeps the common
    // shift of the first pass (see the static test), so it must only not get worse
    assert!(px < 0.8 * ps, "SSST pair error {px} vs static {ps}");
    assert!(zx <= zs, "SSST depth {zx} vs static {zs}");
    assert!(hx < 1.1 * hs, "SSST horizontal {hx} vs static {hs}");
}
