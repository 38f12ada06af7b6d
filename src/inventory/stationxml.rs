//! FDSN StationXML 1.x (1.0, 1.1, 1.2): station codes and coordinates.
//!
//! Which coordinates a station gets (the rule, since StationXML can hold several):
//! - **Epochs.** The same network and station code may appear as several `<Station>` epochs;
//!   the one with the latest `startDate` is used (a missing `startDate` counts as earliest).
//!   Two epochs with the same start are a duplicate error.
//! - **Channels.** A station's position is where its sensor is. When the chosen epoch lists
//!   channels, a channel whose code ends in `Z` (the vertical component, the one P onsets are
//!   picked on) gives latitude, longitude, elevation and the location code; without a
//!   vertical channel any channel does. Among candidates the latest `startDate` wins (the
//!   current channel epoch), then document order. Without channels (a `level=station`
//!   document) the `<Station>` coordinates are used.
//! - **Elevation.** The channel `<Elevation>` is, per the StationXML schema, the elevation of
//!   the sensor itself (m above sea level); `<Depth>` (burial below the local surface) is
//!   informational and is not subtracted again.
//!
//! Namespaces are ignored, unknown elements (responses, site, comments) skipped. Errors name
//! the element path, e.g. `Network[CI]/Station[PASC]/Channel[00.HHZ]`, and the field.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::{check_value, finish, read_text, InventoryError, RawStation};
use crate::domain::{parse_utc, Station, StationCode, StationInventory, UtcTime};

/// Reads a StationXML file.
pub fn read_stationxml_path(path: &Path) -> Result<StationInventory, InventoryError> {
    let text = read_text(path)?;
    read_stationxml_str(&text, path)
}

/// Reads StationXML text; `file` is only used to name the source in errors.
pub fn read_stationxml_str(text: &str, file: &Path) -> Result<StationInventory, InventoryError> {
    let syntax = |location: &str, message: String| InventoryError::Syntax {
        file: file.to_path_buf(),
        location: location.to_string(),
        message,
    };
    check_root(text).map_err(|m| syntax("document", m))?;
    let doc: XDocument = quick_xml::de::from_str(text)
        .map_err(|e| syntax("document", format!("malformed StationXML: {e}")))?;

    // (network, station) -> index in `raw` and the chosen epoch's start
    let mut chosen: HashMap<(String, String), (usize, Option<UtcTime>)> = HashMap::new();
    let mut raw: Vec<RawStation> = Vec::new();
    for (ni, net) in doc.networks.iter().enumerate() {
        let net_path = format!(
            "Network[{}]",
            net.code.as_deref().unwrap_or(&format!("#{}", ni + 1))
        );
        let network = required_code(file, &net_path, "@code", net.code.as_deref())?;
        for (si, sta) in net.stations.iter().enumerate() {
            let sta_path = format!(
                "{net_path}/Station[{}]",
                sta.code.as_deref().unwrap_or(&format!("#{}", si + 1))
            );
            let station_code = required_code(file, &sta_path, "@code", sta.code.as_deref())?;
            let start = match sta.start_date.as_deref() {
                None => None,
                Some(s) => Some(
                    parse_utc(s)
                        .map_err(|e| field(file, &sta_path, "@startDate", e.to_string()))?,
                ),
            };
            let (station, location) =
                sensor_position(file, &sta_path, &network, &station_code, sta)?;
            let new = RawStation { station, location };
            let key = (network.clone(), station_code.clone());
            match chosen.get(&key) {
                None => {
                    chosen.insert(key, (raw.len(), start));
                    raw.push(new);
                }
                Some(&(i, prev_start)) => {
                    if prev_start == start {
                        return Err(InventoryError::Duplicate {
                            file: file.to_path_buf(),
                            location: new.location,
                            code: new.station.code.to_string(),
                            first: raw[i].location.clone(),
                        });
                    }
                    if start > prev_start {
                        // a later epoch supersedes, keeping the first epoch's place in the order
                        chosen.insert(key, (i, start));
                        raw[i] = new;
                    }
                }
            }
        }
    }
    finish(file, raw)
}

/// Checks the document is StationXML before serde silently reads some other XML as empty.
fn check_root(text: &str) -> Result<(), String> {
    let mut reader = quick_xml::Reader::from_str(text);
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Start(e)) | Ok(quick_xml::events::Event::Empty(e)) => {
                let name = e.local_name();
                let name = String::from_utf8_lossy(name.as_ref());
                return if name == "FDSNStationXML" {
                    Ok(())
                } else {
                    Err(format!(
                        "root element is <{name}>, expected <FDSNStationXML>"
                    ))
                };
            }
            Ok(quick_xml::events::Event::Eof) => return Err("no XML element found".into()),
            Ok(_) => {}
            Err(e) => {
                return Err(format!(
                    "malformed XML at byte {}: {e}",
                    reader.error_position()
                ))
            }
        }
    }
}

/// The sensor position of one station epoch by the module's rule, with its element path.
fn sensor_position(
    file: &Path,
    sta_path: &str,
    network: &str,
    station: &str,
    sta: &XStation,
) -> Result<(Station, String), InventoryError> {
    let is_vertical = |c: &XChannel| c.code.as_deref().is_some_and(|c| c.trim().ends_with('Z'));
    let any_vertical = sta.channels.iter().any(is_vertical);
    let mut pick: Option<(usize, &XChannel, Option<UtcTime>)> = None;
    for (ci, ch) in sta.channels.iter().enumerate() {
        if any_vertical && !is_vertical(ch) {
            continue;
        }
        let start = match ch.start_date.as_deref() {
            None => None,
            Some(s) => {
                let path = format!("{sta_path}/Channel[#{}]", ci + 1);
                Some(parse_utc(s).map_err(|e| field(file, &path, "@startDate", e.to_string()))?)
            }
        };
        // strictly later only: on equal starts the first in document order stays
        if pick.as_ref().is_none_or(|p| start > p.2) {
            pick = Some((ci, ch, start));
        }
    }
    let pick = pick.map(|(ci, ch, _)| (ci, ch));
    let mut code = StationCode::new(network, station);
    let (path, lat, lon, elev) = match pick {
        Some((ci, ch)) => {
            let loc = ch.location_code.as_deref().unwrap_or("").trim();
            let cha = ch.code.as_deref().unwrap_or("").trim();
            let path = if cha.is_empty() {
                format!("{sta_path}/Channel[#{}]", ci + 1)
            } else {
                format!("{sta_path}/Channel[{loc}.{cha}]")
            };
            if loc != "--" {
                code.location = loc.to_string();
            }
            (path, &ch.latitude, &ch.longitude, &ch.elevation)
        }
        None => (
            sta_path.to_string(),
            &sta.latitude,
            &sta.longitude,
            &sta.elevation,
        ),
    };
    let lat_deg = number(file, &path, "Latitude", "lat", lat)?;
    let lon_deg = number(file, &path, "Longitude", "lon", lon)?;
    let elevation_m = number(file, &path, "Elevation", "elev_m", elev)?;
    Ok((
        Station {
            code,
            lat_deg,
            lon_deg,
            elevation_m,
        },
        path,
    ))
}

fn field(file: &Path, path: &str, name: &str, message: String) -> InventoryError {
    InventoryError::Field {
        file: file.to_path_buf(),
        location: path.to_string(),
        field: name.to_string(),
        message,
    }
}

fn required_code(
    file: &Path,
    path: &str,
    name: &str,
    v: Option<&str>,
) -> Result<String, InventoryError> {
    match v.map(str::trim) {
        Some(s) if !s.is_empty() => Ok(s.to_string()),
        _ => Err(field(file, path, name, "missing code".into())),
    }
}

/// A numeric element's value, checked against the limits of `limit` (`lat`, `lon`, `elev_m`).
fn number(
    file: &Path,
    path: &str,
    element: &str,
    limit: &str,
    v: &Option<XValue>,
) -> Result<f64, InventoryError> {
    let s = v
        .as_ref()
        .and_then(|v| v.text.as_deref())
        .map(str::trim)
        .unwrap_or("");
    if s.is_empty() {
        return Err(field(file, path, element, "missing value".into()));
    }
    let x: f64 = s
        .parse()
        .map_err(|_| field(file, path, element, format!("{s:?} is not a number")))?;
    check_value(limit, x).map_err(|m| field(file, path, element, m))?;
    Ok(x)
}

// Wire structs: everything optional so that absence is reported by our own checks, with the
// element path, rather than by serde without one.

#[derive(Debug, Deserialize)]
struct XDocument {
    #[serde(rename = "Network", default)]
    networks: Vec<XNetwork>,
}

#[derive(Debug, Deserialize)]
struct XNetwork {
    #[serde(rename = "@code")]
    code: Option<String>,
    #[serde(rename = "Station", default)]
    stations: Vec<XStation>,
}

#[derive(Debug, Deserialize)]
struct XStation {
    #[serde(rename = "@code")]
    code: Option<String>,
    #[serde(rename = "@startDate")]
    start_date: Option<String>,
    #[serde(rename = "Latitude")]
    latitude: Option<XValue>,
    #[serde(rename = "Longitude")]
    longitude: Option<XValue>,
    #[serde(rename = "Elevation")]
    elevation: Option<XValue>,
    #[serde(rename = "Channel", default)]
    channels: Vec<XChannel>,
}

#[derive(Debug, Deserialize)]
struct XChannel {
    #[serde(rename = "@code")]
    code: Option<String>,
    #[serde(rename = "@locationCode")]
    location_code: Option<String>,
    #[serde(rename = "@startDate")]
    start_date: Option<String>,
    #[serde(rename = "Latitude")]
    latitude: Option<XValue>,
    #[serde(rename = "Longitude")]
    longitude: Option<XValue>,
    #[serde(rename = "Elevation")]
    elevation: Option<XValue>,
}

/// A value element such as `<Latitude unit="DEGREES" datum="WGS84">34.1</Latitude>`.
#[derive(Debug, Deserialize)]
struct XValue {
    #[serde(rename = "$text")]
    text: Option<String>,
}
