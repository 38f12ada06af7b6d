//! Writes and re-reads the artifact folder `trained-models/NAME/` (layout documented in
//! [`crate::traveltime::pinn`]).

use std::fmt::Write as _;
use std::path::Path;

use burn::module::Module;
use burn::tensor::Device;

use super::model::TauNet;
use super::training::{save_burnpacks, LossRecord, TrainConfig, Trained};
use super::TrainError;
use crate::traveltime::pinn::PinnManifest;

fn io_err(file: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Io {
        file: file.to_path_buf(),
        message: e.to_string(),
    }
}

/// Writes manifest, raw f32 weights, burnpacks, `loss.csv` and `loss.svg` into `dir`.
pub fn write_artifact(dir: &Path, cfg: &TrainConfig, trained: &Trained) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let mpath = dir.join("manifest.json");
    let text = serde_json::to_string_pretty(&trained.manifest).map_err(|e| io_err(&mpath, e))?;
    std::fs::write(&mpath, text + "\n").map_err(|e| io_err(&mpath, e))?;
    let wpath = dir.join(&trained.manifest.weights_file);
    let bytes: Vec<u8> = trained
        .weights
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(&wpath, bytes).map_err(|e| io_err(&wpath, e))?;
    save_burnpacks(cfg, &trained.nets, dir)?;
    let cpath = dir.join("loss.csv");
    std::fs::write(&cpath, loss_csv(&trained.curve)).map_err(|e| io_err(&cpath, e))?;
    let spath = dir.join("loss.svg");
    std::fs::write(&spath, loss_svg(&trained.curve, &trained.manifest.name))
        .map_err(|e| io_err(&spath, e))?;
    Ok(())
}

/// Reloads the burn nets of an artifact from its burnpacks (for checks and fine-tuning).
pub fn load_nets(
    dir: &Path,
    manifest: &PinnManifest,
    device: &Device,
) -> Result<Vec<TauNet>, TrainError> {
    let widths = manifest.architecture.widths();
    manifest
        .nets
        .iter()
        .map(|spec| {
            let name = spec
                .burnpack
                .as_deref()
                .ok_or_else(|| TrainError::Config("net without a burnpack".into()))?;
            let file = dir.join(name);
            TauNet::new(&widths, device)
                .try_load_file(&file)
                .map_err(|e| io_err(&file, e))
        })
        .collect()
}

fn fmt_opt(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.6e}")
    } else {
        String::new()
    }
}

/// The loss curve as CSV (validation columns empty where not validated).
pub fn loss_csv(curve: &[LossRecord]) -> String {
    let mut s = String::from("step,elapsed_s,lr,loss,loss_time,loss_grad,loss_eikonal,val_rmae_p,val_rmae_s,val_p99_p_s,val_p99_s_s,loss_branch\n");
    for r in curve {
        let _ = writeln!(
            s,
            "{},{:.3},{:.4e},{:.6e},{:.6e},{:.6e},{:.6e},{},{},{},{},{:.6e}",
            r.step,
            r.elapsed_s,
            r.lr,
            r.loss,
            r.loss_time,
            r.loss_grad,
            r.loss_eikonal,
            fmt_opt(r.val_rmae[0]),
            fmt_opt(r.val_rmae[1]),
            fmt_opt(r.val_p99_s[0]),
            fmt_opt(r.val_p99_s[1]),
            r.loss_branch
        );
    }
    s
}

/// A small self-contained SVG: log10 training loss against step, with validation RMAE dots.
pub fn loss_svg(curve: &[LossRecord], title: &str) -> String {
    let (w, h, m) = (720.0, 400.0, 60.0);
    let pts: Vec<(f64, f64)> = curve
        .iter()
        .filter(|r| r.loss > 0.0)
        .map(|r| (r.step as f64, r.loss.log10()))
        .collect();
    let vals: Vec<(f64, f64)> = curve
        .iter()
        .flat_map(|r| {
            r.val_rmae
                .iter()
                .filter(|v| v.is_finite() && **v > 0.0)
                .map(move |v| (r.step as f64, v.log10()))
        })
        .collect();
    let all: Vec<f64> = pts.iter().chain(&vals).map(|p| p.1).collect();
    let (ymin, ymax) = all
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| {
            (a.min(y), b.max(y))
        });
    let (ymin, ymax) = if ymin.is_finite() && ymax > ymin {
        (ymin.floor(), ymax.ceil())
    } else {
        (-6.0, 0.0)
    };
    let xmax = curve.last().map(|r| r.step as f64).unwrap_or(1.0).max(1.0);
    let sx = |x: f64| m + (w - 2.0 * m) * x / xmax;
    let sy = |y: f64| h - m - (h - 2.0 * m) * (y - ymin) / (ymax - ymin);
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n");
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(s, "<text x=\"{}\" y=\"20\" text-anchor=\"middle\">{} - training loss (line) and validation RMAE (dots), log10</text>", w / 2.0, xml_escape(title));
    let _ = writeln!(
        s,
        "<rect x=\"{m}\" y=\"{m}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"black\"/>",
        w - 2.0 * m,
        h - 2.0 * m
    );
    let mut y = ymin;
    while y <= ymax + 1e-9 {
        let _ = writeln!(s, "<line x1=\"{m}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">1e{}</text>", w - m, sy(y), sy(y), m - 4.0, sy(y) + 4.0, y as i64);
        y += 1.0;
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">step (of {})</text>",
        w / 2.0,
        h - 20.0,
        xmax as u64
    );
    let stride = (pts.len() / 1500).max(1);
    let poly: Vec<String> = pts
        .iter()
        .step_by(stride)
        .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
        .collect();
    let _ = writeln!(
        s,
        "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1\" points=\"{}\"/>",
        poly.join(" ")
    );
    for (x, y) in &vals {
        let _ = writeln!(
            s,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"#d62728\"/>",
            sx(*x),
            sy(*y)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn xml_escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
