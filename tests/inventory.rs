//! Station inventory readers against the shared data sets (read in place from
//! `../shared/data`), a hand-written StationXML fixture, and bad input.

use std::path::{Path, PathBuf};

use eikoloc::inventory::{self, read_csv_str, read_stationxml_str, InventoryError};

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(rel)
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn every_shared_station_csv_parses_with_the_readme_count() {
    // counts from the data sets' README files (growclust_ssprings_tt has no stations)
    let sets = [
        ("ridgecrest_synthetic", 27),
        ("hypodd_parkfield", 396),
        ("hypodd_calaveras", 388),
        ("nlloc_alaska_2018", 64),
    ];
    for (set, n) in sets {
        let path = shared(&format!("{set}/stations.csv"));
        let inv = inventory::read_path(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(inv.len(), n, "{set}");
        // every value agrees with a plain independent read of the same file
        let mut rdr = csv::Reader::from_path(&path).unwrap();
        let h = rdr.headers().unwrap().clone();
        let col = |name: &str| h.iter().position(|x| x == name).unwrap();
        let (inet, ista, ilat, ilon, iel) = (
            col("network"),
            col("station"),
            col("lat"),
            col("lon"),
            col("elev_m"),
        );
        let mut rows = 0;
        for (i, r) in rdr.records().enumerate() {
            let r = r.unwrap();
            let s = &inv.stations()[i];
            assert_eq!(
                (s.code.network.as_str(), s.code.station.as_str()),
                (&r[inet], &r[ista])
            );
            assert_eq!(s.lat_deg, r[ilat].parse::<f64>().unwrap());
            assert_eq!(s.lon_deg, r[ilon].parse::<f64>().unwrap());
            assert_eq!(s.elevation_m, r[iel].parse::<f64>().unwrap());
            assert!(inv.get(&r[inet], &r[ista]).is_some());
            rows += 1;
        }
        assert_eq!(rows, n, "{set}");
    }
}

#[test]
fn alaska_location_dashes_mean_empty_location() {
    let inv = inventory::read_csv_path(&shared("nlloc_alaska_2018/stations.csv")).unwrap();
    // the file's location column is "--" throughout (NLLoc label NET_STA_--)
    assert!(inv.stations().iter().all(|s| s.code.location.is_empty()));
    let s = inv.get("AK", "BMR").unwrap();
    assert_eq!(
        (s.lat_deg, s.lon_deg, s.elevation_m),
        (60.967701, -144.605103, 842.0)
    );
}

#[test]
fn stationxml_fixture_follows_the_documented_rule() {
    let inv = inventory::read_path(&fixture("stationxml_three_stations.xml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(inv.len(), 3);
    let codes: Vec<String> = inv.stations().iter().map(|s| s.code.to_string()).collect();
    assert_eq!(
        codes,
        ["EK.FXA", "EK.FXB", "EK.FXC"],
        "document order of first appearance"
    );

    // station level only: the <Station> coordinates
    let a = inv.get("EK", "FXA").unwrap();
    assert_eq!(
        (a.lat_deg, a.lon_deg, a.elevation_m),
        (34.05, -117.25, 812.0)
    );
    assert_eq!(a.code.location, "");

    // borehole: the vertical channel's position (150 m below the 1500 m surface), location 10
    let b = inv.get("EK", "FXB").unwrap();
    assert_eq!(
        (b.lat_deg, b.lon_deg, b.elevation_m),
        (34.1002, -117.4001, 1350.0)
    );
    assert_eq!(b.code.location, "10");

    // the 2012 station epoch, and in it the 2018 HHZ epoch (not the earlier HHN or HHZ)
    let c = inv.get("EK", "FXC").unwrap();
    assert_eq!(
        (c.lat_deg, c.lon_deg, c.elevation_m),
        (33.9601, -117.3102, 425.0)
    );
}

/// The error text of reading `text` as CSV from a file named `bad.csv`.
fn csv_err(text: &str) -> (InventoryError, String) {
    let e = read_csv_str(text, Path::new("bad.csv")).unwrap_err();
    let s = e.to_string();
    (e, s)
}

const HEADER: &str = "network,station,lat,lon,elev_m\n";

#[test]
fn csv_duplicate_station_names_both_lines() {
    let (e, s) = csv_err(&format!(
        "{HEADER}EK,A,34,-117,100\nEK,B,34.1,-117,100\nEK,A,34.2,-117,100\n"
    ));
    assert!(matches!(e, InventoryError::Duplicate { .. }), "{s}");
    assert!(
        s.contains("bad.csv:4") && s.contains("EK.A") && s.contains("bad.csv:2"),
        "{s}"
    );
}

#[test]
fn csv_impossible_coordinates_name_line_and_field() {
    let cases = [
        ("EK,A,91.0,-117,100", "lat"),
        ("EK,A,-90.5,-117,100", "lat"),
        ("EK,A,34,-181,100", "lon"),
        ("EK,A,NaN,-117,100", "lat"),
        ("EK,A,34,inf,100", "lon"),
        ("EK,A,34,-117,9500", "elev_m"),
        ("EK,A,34,-117,-12500", "elev_m"),
        ("EK,A,34,-117,1.2e4", "elev_m"),
        ("EK,A,34,-117,abc", "elev_m"),
    ];
    for (row, field) in cases {
        let (e, s) = csv_err(&format!("{HEADER}EK,OK,34,-117,100\n{row}\n"));
        match e {
            InventoryError::Field {
                location, field: f, ..
            } => {
                assert_eq!((location.as_str(), f.as_str()), ("3", field), "{row}: {s}");
            }
            other => panic!("{row}: expected a field error, got {other}"),
        }
        assert!(s.starts_with("bad.csv:3: field"), "{s}");
    }
    // the limits themselves are allowed (Dead Sea shore, Everest, a sea-floor sensor)
    let inv = read_csv_str(
        &format!("{HEADER}EK,A,90,-180,8848\nEK,B,-90,360,-11000\n"),
        Path::new("ok.csv"),
    )
    .unwrap();
    assert_eq!(inv.len(), 2);
}

#[test]
fn csv_missing_field_and_column() {
    let (e, s) = csv_err(&format!("{HEADER}EK,,34,-117,100\n"));
    assert!(
        matches!(e, InventoryError::Field { ref field, .. } if field == "station"),
        "{s}"
    );
    let (e, s) = csv_err(&format!("{HEADER}EK,A,34,,100\n"));
    assert!(
        matches!(e, InventoryError::Field { ref field, .. } if field == "lon"),
        "{s}"
    );
    let (e, s) = csv_err("network,station,lat,lon\nEK,A,34,-117\n");
    assert!(
        matches!(e, InventoryError::MissingColumn { ref column, .. } if column == "elev_m"),
        "{s}"
    );
    // a short row is a syntax error naming its line, not a silent default
    let (e, s) = csv_err(&format!("{HEADER}EK,A,34,-117,100\nEK,B,34\n"));
    assert!(
        matches!(e, InventoryError::Syntax { ref location, .. } if location == "3"),
        "{s}"
    );
}

#[test]
fn csv_empty_inputs_are_errors() {
    for text in ["", HEADER, "\n\n"] {
        let (e, s) = csv_err(text);
        assert!(
            matches!(
                e,
                InventoryError::Empty { .. } | InventoryError::MissingColumn { .. }
            ),
            "{text:?}: {s}"
        );
        assert!(s.contains("bad.csv"), "{s}");
    }
    assert!(matches!(csv_err(HEADER).0, InventoryError::Empty { .. }));
}

#[test]
fn csv_extra_columns_ignored_and_location_read() {
    let inv = read_csv_str(
        "elev_m,station,network,comment,lat,lon,location\n150,A,EK,\"x, y\",34.5,-117.5,00\n",
        Path::new("x.csv"),
    )
    .unwrap();
    let s = &inv.stations()[0];
    assert_eq!(
        (
            s.code.network.as_str(),
            s.code.station.as_str(),
            s.code.location.as_str()
        ),
        ("EK", "A", "00")
    );
    assert_eq!((s.lat_deg, s.lon_deg, s.elevation_m), (34.5, -117.5, 150.0));
}

#[test]
fn missing_file_names_it() {
    let e = inventory::read_path(Path::new("/nonexistent/stations.csv"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/stations.csv"), "{e}");
}

/// A one-station StationXML document around the given `<Station>` body.
fn xml(station: &str) -> String {
    format!(
        r#"<?xml version="1.0"?><FDSNStationXML xmlns="http://www.fdsn.org/xml/station/1" schemaVersion="1.2"><Source>t</Source><Created>2026-01-01T00:00:00</Created><Network code="EK">{station}</Network></FDSNStationXML>"#
    )
}

fn xml_err(text: &str) -> (InventoryError, String) {
    let e = read_stationxml_str(text, Path::new("bad.xml")).unwrap_err();
    let s = e.to_string();
    (e, s)
}

#[test]
fn stationxml_bad_values_name_element_and_field() {
    let (e, s) = xml_err(&xml(
        r#"<Station code="Q1"><Longitude>-117</Longitude><Elevation>10</Elevation></Station>"#,
    ));
    assert!(
        matches!(e, InventoryError::Field { ref location, ref field, .. } if location == "Network[EK]/Station[Q1]" && field == "Latitude"),
        "{s}"
    );
    let (_, s) = xml_err(&xml(
        r#"<Station code="Q1"><Latitude>34</Latitude><Longitude>-117</Longitude><Elevation>10</Elevation>
           <Channel code="HHZ" locationCode="00"><Latitude>34</Latitude><Longitude>-117</Longitude><Elevation>9999</Elevation><Depth>0</Depth></Channel></Station>"#,
    ));
    assert!(
        s.contains("bad.xml:Network[EK]/Station[Q1]/Channel[00.HHZ]") && s.contains("Elevation"),
        "{s}"
    );
    let (_, s) = xml_err(&xml(
        r#"<Station code="Q1"><Latitude>north</Latitude><Longitude>-117</Longitude><Elevation>10</Elevation></Station>"#,
    ));
    assert!(s.contains("Latitude") && s.contains("not a number"), "{s}");
    let (_, s) = xml_err(&xml(
        r#"<Station><Latitude>34</Latitude><Longitude>-117</Longitude><Elevation>10</Elevation></Station>"#,
    ));
    assert!(s.contains("Station[#1]") && s.contains("@code"), "{s}");
}

#[test]
fn stationxml_duplicate_epoch_is_an_error() {
    let sta = r#"<Station code="Q1" startDate="2020-01-01T00:00:00"><Latitude>34</Latitude><Longitude>-117</Longitude><Elevation>10</Elevation></Station>"#;
    let (e, s) = xml_err(&xml(&format!("{sta}{sta}")));
    assert!(
        matches!(e, InventoryError::Duplicate { .. }) && s.contains("EK.Q1"),
        "{s}"
    );
}

#[test]
fn stationxml_not_stationxml_or_empty() {
    let (e, s) = xml_err(
        r#"<?xml version="1.0"?><q:quakeml xmlns:q="http://quakeml.org/xmlns/quakeml/1.2"></q:quakeml>"#,
    );
    assert!(
        matches!(e, InventoryError::Syntax { .. }) && s.contains("quakeml"),
        "{s}"
    );
    let (_, s) = xml_err("<FDSNStationXML><Network code=\"EK\"><Station code=\"A\">");
    assert!(s.contains("bad.xml"), "{s}");
    let (e, s) =
        xml_err(r#"<FDSNStationXML schemaVersion="1.1"><Source>t</Source></FDSNStationXML>"#);
    assert!(matches!(e, InventoryError::Empty { .. }), "{s}");
    let (e, _) = xml_err("");
    assert!(matches!(e, InventoryError::Syntax { .. }));
}
