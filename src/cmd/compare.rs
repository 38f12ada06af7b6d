//! `eikoloc compare`: match a catalog to a reference and report their differences.
//!
//! `eikoloc compare --reference REF --catalog CAT [--match auto|id|time-place]
//! [--max-dt-s 2] [--max-distance-km 20] [--json] [--svg DIR]`
//!
//! Both inputs may be the locator's catalog CSV, a reference catalog CSV of the data sets or
//! QuakeML, recognised by content. A rejected row is an error naming file, line and field.

use std::path::PathBuf;

use anyhow::Context;

use eikoloc::compare::svg::{write_figures, FigureLabels};
use eikoloc::compare::{compare, format_report, read_hypocentres_file, MatchMode, MatchOptions};

/// How to pair events.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Matching {
    /// By id when any id is common, else by time and place.
    Auto,
    /// By event id.
    Id,
    /// By origin time and epicentre, one-to-one.
    TimePlace,
}

/// Arguments of `eikoloc compare`.
#[derive(clap::Args)]
pub struct Args {
    /// Reference catalog (truth for the coverage figures).
    #[arg(long)]
    pub reference: PathBuf,
    /// Catalog to compare with the reference.
    #[arg(long)]
    pub catalog: PathBuf,
    /// How to pair events.
    #[arg(long = "match", value_enum, default_value = "auto")]
    pub matching: Matching,
    /// Largest origin-time difference of a time/place match, s.
    #[arg(long, default_value_t = 2.0)]
    pub max_dt_s: f64,
    /// Largest epicentral distance of a time/place match, km.
    #[arg(long, default_value_t = 20.0)]
    pub max_distance_km: f64,
    /// Print the statistics (and every pair) as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write map.svg, depth_section.svg and histograms.svg into this folder.
    #[arg(long)]
    pub svg: Option<PathBuf>,
}

/// Runs the comparison.
pub fn run(a: Args) -> anyhow::Result<()> {
    let reference = read_hypocentres_file(&a.reference).context("reading the reference")?;
    let catalog = read_hypocentres_file(&a.catalog).context("reading the catalog")?;
    let options = MatchOptions {
        mode: match a.matching {
            Matching::Auto => MatchMode::Auto,
            Matching::Id => MatchMode::Id,
            Matching::TimePlace => MatchMode::TimePlace,
        },
        max_dt_s: a.max_dt_s,
        max_distance_km: a.max_distance_km,
    };
    let c = compare(&reference, &catalog, &options)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        print!("{}", format_report(&c));
    }
    if let Some(dir) = &a.svg {
        let name = |p: &PathBuf| p.display().to_string();
        let labels = FigureLabels {
            reference: name(&a.reference),
            catalog: name(&a.catalog),
        };
        let files = write_figures(dir, &reference, &catalog, &c, &labels)?;
        for f in files {
            eprintln!("wrote {}", f.display());
        }
    }
    Ok(())
}
