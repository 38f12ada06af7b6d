//! Stations at sea level (elevation 0, as HypoDD station files give them) and the locator's
//! traveltime table, whose shallowest source row is then the stations' own depth: every
//! tabulated traveltime and gradient must be finite there.

use std::sync::Arc;

use eikoloc::domain::{LocalPoint, Phase};
use eikoloc::locate::{RadialTableModel, TableGrid};
use eikoloc::traveltime::{LayeredExact, Receiver, TraveltimeModel};
use eikoloc::velocity::LayeredModel;

fn calaveras_like() -> LayeredModel {
    // a shallow low-velocity layer over a gradient, like the NCSN Calaveras model
    LayeredModel::from_csv_text(
        "depth_top_km,vp_km_s,vs_km_s\n0.0,2.5,1.4451\n0.6,3.16,1.8266\n1.2,3.82,2.2081\n\
         3.0,4.807,2.7786\n8.0,5.342,3.0879\n20.0,6.0033,3.4701\n22.0,6.0617,3.5039\n\
         24.0,6.12,3.54\n",
        std::path::Path::new("inline.csv"),
    )
    .unwrap()
}

#[test]
fn exact_traveltimes_between_sea_level_points_are_finite() {
    let m = LayeredExact::new(calaveras_like());
    for phase in Phase::ALL {
        for (r_km, z) in [
            (0.0, 0.0),
            (0.5, 0.0),
            (3.0, 0.0),
            (30.0, 0.0),
            (120.0, 0.0),
            // sources on, or a hair above or below, a layer interface, far from the station
            (160.4, 22.0),
            (160.4, 22.0 - 1e-9),
            (160.4, 22.0 + 1e-9),
            (203.8, 24.0),
        ] {
            let s = LocalPoint::new(r_km, 0.0, z);
            let rec = LocalPoint::new(0.0, 0.0, 0.0);
            let t = m.traveltime_and_gradient(phase, s, rec).unwrap();
            assert!(
                t.t_s.is_finite() && t.grad_s_per_km.iter().all(|g| g.is_finite()),
                "{phase} at {r_km} km, depth {z} km: {t:?}"
            );
        }
    }
}

#[test]
fn table_with_sea_level_stations_is_finite_from_the_surface_down() {
    let inner: Arc<dyn TraveltimeModel> = Arc::new(LayeredExact::new(calaveras_like()));
    let rec: Vec<Receiver> = Phase::ALL
        .map(|phase| Receiver {
            phase,
            position: LocalPoint::new(0.0, 0.0, 0.0),
        })
        .to_vec();
    // spacings a hair over 0.5 / 0.25 km, as `eikoloc locate` fits them to the box, so
    // source nodes fall a hair above the layer interfaces
    let grid = TableGrid {
        r_max_km: 250.0,
        dr_km: 250.0 / (500.0 - 1e-9),
        z_min_km: 0.0,
        z_max_km: 40.0,
        dz_km: 40.0 / (160.0 - 1e-9),
    };
    let table = RadialTableModel::build(inner, grid, &rec).unwrap();
    for phase in Phase::ALL {
        for iz in 0..160 {
            let z = iz as f64 * 0.25;
            for r_km in [0.0, 0.2, 0.5, 0.7, 3.3, 30.1, 120.0, 160.4, 171.2, 203.8] {
                let s = LocalPoint::new(r_km, 0.0, z);
                let t = table
                    .traveltime_and_gradient(phase, s, rec[0].position)
                    .unwrap();
                assert!(
                    t.t_s.is_finite() && t.grad_s_per_km.iter().all(|g| g.is_finite()),
                    "{phase} at {r_km} km, depth {z} km: {t:?}"
                );
            }
        }
    }
}
