//! Distance weighting (Hypoinverse `DIS`) against a known truth: a 1-D model that is right near
//! the events and too slow far out (observed arrivals early by 12 ms per km beyond 15 km, the
//! shape of the Calaveras misfit in ../shared/data/hypodd_calaveras/README.md). With all picks
//! at full weight the far picks drag the hypocentre; with the near stations deciding, the
//! truth comes back, and the far picks are still reported with their residuals.

use eikoloc::domain::{LocalPoint, Phase};
use eikoloc::locate::{locate, DistanceWeighting, LocateConfig, Observation, SearchBox};
use eikoloc::traveltime::{AnalyticModel, Receiver, TimeAndGradient, TraveltimeModel};
use eikoloc::velocity::GradientModel;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Early arrival of a far pick, s (negative: the model is too slow there).
fn far_error_s(d_km: f64) -> f64 {
    -0.012 * (d_km - 15.0).max(0.0)
}

/// Six stations within 4-14 km of the cluster, twenty between 30 and 120 km, one-sided
/// (north-east), as a regional network seen from the edge of a dense local one.
fn network() -> Vec<LocalPoint> {
    let mut v = Vec::new();
    for k in 0..6 {
        let a = k as f64 * 60f64.to_radians() + 0.2;
        let r = 4.0 + 2.0 * k as f64;
        v.push(LocalPoint::new(r * a.sin(), r * a.cos(), -0.3));
    }
    for k in 0..20 {
        let a = (10.0 + 4.0 * k as f64).to_radians();
        let r = 30.0 + 4.7 * k as f64;
        v.push(LocalPoint::new(r * a.sin(), r * a.cos(), -0.2));
    }
    v
}

struct Located {
    h_err_km: f64,
    z_err_km: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[test]
fn near_stations_decide_when_the_model_fails_far_out() {
    let model = AnalyticModel::new(GradientModel::new(0.0, 5.0, 2.9, 0.05, 0.03).unwrap());
    let stations = network();
    let bbox = SearchBox {
        x_min_km: -150.0,
        x_max_km: 150.0,
        y_min_km: -150.0,
        y_max_km: 150.0,
        z_min_km: -0.3,
        z_max_km: 30.0,
    };
    let base = LocateConfig {
        model_error_floor_s: 0.05,
        model_error_fraction: 0.02,
        ..LocateConfig::default()
    };
    let weighted = LocateConfig {
        distance_weighting: Some(DistanceWeighting {
            min_stations: 4,
            full_km: 20.0,
            zero_factor: 1.5,
        }),
        ..base.clone()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (mut plain, mut dw) = (Vec::new(), Vec::new());
    let mut far_checked = 0;
    for e in 0..16 {
        let truth = [
            rng.gen_range(-2.0..2.0),
            rng.gen_range(-2.0..2.0),
            rng.gen_range(4.0..10.0),
        ];
        let mut obs = Vec::new();
        let mut injected = Vec::new();
        for s in &stations {
            for phase in [Phase::P, Phase::S] {
                let receiver = Receiver {
                    phase,
                    position: *s,
                };
                let mut tg = [TimeAndGradient::default()];
                model
                    .batch_with_gradient(&[LocalPoint::from_array(truth)], &[receiver], &mut tg)
                    .unwrap();
                let d = (s.x_km - truth[0]).hypot(s.y_km - truth[1]);
                let sigma = if phase == Phase::P { 0.03 } else { 0.06 };
                let noise = sigma * (rng.gen::<f64>() - 0.5) * 2.0;
                let err = far_error_s(d) * if phase == Phase::P { 1.0 } else { 1.7 };
                obs.push(Observation {
                    receiver,
                    t_obs_s: 10.0 + tg[0].t_s + err + noise,
                    pick_sigma_s: sigma,
                });
                injected.push((d, err));
            }
        }
        for (config, out) in [(&base, &mut plain), (&weighted, &mut dw)] {
            let post = locate(&model, &obs, &bbox, config, e as u64).unwrap();
            let m = post.mean_km;
            out.push(Located {
                h_err_km: (m[0] - truth[0]).hypot(m[1] - truth[1]),
                z_err_km: (m[2] - truth[2]).abs(),
            });
            if config.distance_weighting.is_some() {
                assert_eq!(post.weights.len(), obs.len());
                for (i, &(d, err)) in injected.iter().enumerate() {
                    if d < 15.0 {
                        assert_eq!(post.weights[i], 1.0, "near pick {i} at {d:.1} km");
                    }
                    if d > 35.0 {
                        // weighted out, yet still reported, with the model's misfit as residual
                        assert_eq!(post.weights[i], 0.0, "far pick {i} at {d:.1} km");
                        assert!(
                            (post.residual_s[i] - err).abs() < 0.25,
                            "far pick {i} at {d:.1} km: residual {} vs injected {err}",
                            post.residual_s[i]
                        );
                        far_checked += 1;
                    }
                }
            } else {
                assert!(post.weights.iter().all(|&w| w == 1.0));
            }
        }
    }
    assert!(far_checked > 100, "{far_checked}");
    let h = |v: &[Located]| median(v.iter().map(|l| l.h_err_km).collect());
    let z = |v: &[Located]| median(v.iter().map(|l| l.z_err_km).collect());
    eprintln!(
        "median error H / Z km: all picks {:.3} / {:.3}, distance-weighted {:.3} / {:.3}",
        h(&plain),
        z(&plain),
        h(&dw),
        z(&dw)
    );
    // near stations only: errors of the pick noise, not of the model
    assert!(h(&dw) < 0.5 && z(&dw) < 0.6, "{} / {}", h(&dw), z(&dw));
    // and the premise: the far picks do bias the unweighted solution
    assert!(
        h(&plain) > 2.0 * h(&dw) || z(&plain) > 2.0 * z(&dw),
        "all picks {} / {}, weighted {} / {}",
        h(&plain),
        z(&plain),
        h(&dw),
        z(&dw)
    );
}

#[test]
fn the_taper_follows_the_hypoinverse_rule() {
    let obs_at = |d: &[f64]| -> Vec<Observation> {
        d.iter()
            .map(|&x| Observation {
                receiver: Receiver {
                    phase: Phase::P,
                    position: LocalPoint::new(x, 0.0, 0.0),
                },
                t_obs_s: 0.0,
                pick_sigma_s: 0.05,
            })
            .collect()
    };
    let dw = DistanceWeighting {
        min_stations: 3,
        full_km: 15.0,
        zero_factor: 2.0,
    };
    // the 3rd station is at 20 km > 15 km: full weight to 20, zero at 40, half-way 0.5
    let w = dw.weights([0.0, 0.0], &obs_at(&[5.0, 10.0, 20.0, 30.0, 40.0, 80.0]));
    assert_eq!(&w[..3], &[1.0, 1.0, 1.0]);
    assert!((w[3] - 0.5).abs() < 1e-12, "{}", w[3]);
    assert_eq!(&w[4..], &[0.0, 0.0]);
    // P and S at one station count as one station
    let mut two = obs_at(&[5.0, 5.0, 8.0, 8.0, 30.0, 31.0]);
    two[1].receiver.phase = Phase::S;
    two[3].receiver.phase = Phase::S;
    // distinct stations at 5, 8, 30 km: full weight to 30 (counted per pick it would be 15,
    // and 30 km would get weight 0)
    let w = dw.weights([0.0, 0.0], &two);
    assert_eq!(w[4], 1.0, "{w:?}");
    assert!(w[5] > 0.9 && w[5] < 1.0, "{w:?}");
    // a sparse network keeps its nearest min_stations whatever full_km says
    let w = dw.weights([0.0, 0.0], &obs_at(&[50.0, 60.0, 70.0, 200.0]));
    assert_eq!(w, vec![1.0, 1.0, 1.0, 0.0]);
    // parsing names what is wrong
    assert_eq!(
        DistanceWeighting::parse("6, 25, 2").unwrap().min_stations,
        6
    );
    for (bad, word) in [
        ("2,25,2", "min_stations"),
        ("6,-1,2", "full_km"),
        ("6,25,0.5", "zero_factor"),
        ("6,x,2", "full_km"),
        ("6,25", "MIN_STATIONS"),
    ] {
        let e = DistanceWeighting::parse(bad).unwrap_err();
        assert!(e.contains(word), "{bad}: {e}");
    }
}
