//! Scoring an association against the truth, at the event and the pick level.
//!
//! An associated event is a true positive when more than half of its picks belong to one true
//! event that no better-supported associated event has already claimed (one-to-one matching,
//! strongest support first). Recall counts only *detectable* true events: those with at
//! least `min_picks` picks on at least `min_stations` stations; a true event below that bar
//! matched by an associated event is neither a hit nor a miss.

use std::collections::HashMap;

/// The truth about one pick: its event (None for a false pick) and station.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TruthPick {
    /// True event index, or None for a false pick.
    pub event: Option<usize>,
    /// Station index.
    pub station: usize,
}

/// Precision, recall and F1 of an association, per event and per pick.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AssociationScore {
    /// Associated events.
    pub n_associated: usize,
    /// Detectable true events.
    pub n_detectable: usize,
    /// Associated events matched to a true event.
    pub n_matched: usize,
    /// Detectable true events that were matched.
    pub n_detected: usize,
    /// Matched / associated.
    pub event_precision: f64,
    /// Detected / detectable.
    pub event_recall: f64,
    /// Harmonic mean of the two.
    pub event_f1: f64,
    /// Picks assigned to the right (matched) event / all associated picks.
    pub pick_precision: f64,
    /// Picks of detectable events assigned to their event / all picks of detectable events.
    pub pick_recall: f64,
    /// Harmonic mean of the two.
    pub pick_f1: f64,
}

fn f1(p: f64, r: f64) -> f64 {
    if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    }
}

/// Scores `associated` (each event a list of pick ids, ids indexing `truth`) against `truth`.
/// Unknown pick ids count as false picks.
pub fn score_association(
    truth: &[TruthPick],
    associated: &[Vec<u64>],
    min_picks: usize,
    min_stations: usize,
) -> AssociationScore {
    // detectable true events
    let mut per_event: HashMap<usize, (usize, Vec<usize>)> = HashMap::new();
    for t in truth {
        if let Some(e) = t.event {
            let entry = per_event.entry(e).or_default();
            entry.0 += 1;
            entry.1.push(t.station);
        }
    }
    let mut detectable: HashMap<usize, usize> = HashMap::new();
    for (e, (n, mut st)) in per_event {
        st.sort_unstable();
        st.dedup();
        if n >= min_picks && st.len() >= min_stations {
            detectable.insert(e, n);
        }
    }
    // majority true event of every associated event
    let mut claims: Vec<(usize, usize, usize)> = Vec::new(); // (support, assoc index, true event)
    let mut total_assoc_picks = 0usize;
    for (i, ev) in associated.iter().enumerate() {
        total_assoc_picks += ev.len();
        let mut counts: HashMap<usize, usize> = HashMap::new();
        for &id in ev {
            if let Some(e) = truth.get(id as usize).and_then(|t| t.event) {
                *counts.entry(e).or_default() += 1;
            }
        }
        if let Some((&e, &c)) = counts
            .iter()
            .max_by_key(|(&e, &c)| (c, std::cmp::Reverse(e)))
        {
            if 2 * c > ev.len() {
                claims.push((c, i, e));
            }
        }
    }
    claims.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut taken: HashMap<usize, usize> = HashMap::new();
    let mut correct_picks = 0usize;
    let mut correct_detectable_picks = 0usize;
    for &(c, i, e) in &claims {
        if taken.contains_key(&e) {
            continue;
        }
        taken.insert(e, i);
        correct_picks += c;
        if detectable.contains_key(&e) {
            correct_detectable_picks += c;
        }
    }
    let n_matched = taken.len();
    let n_detected = taken.keys().filter(|e| detectable.contains_key(e)).count();
    let n_detectable = detectable.len();
    let detectable_picks: usize = detectable.values().sum();
    let ratio = |a: usize, b: usize| if b > 0 { a as f64 / b as f64 } else { 1.0 };
    let event_precision = ratio(n_matched, associated.len());
    let event_recall = ratio(n_detected, n_detectable);
    let pick_precision = ratio(correct_picks, total_assoc_picks);
    let pick_recall = ratio(correct_detectable_picks, detectable_picks);
    AssociationScore {
        n_associated: associated.len(),
        n_detectable,
        n_matched,
        n_detected,
        event_precision,
        event_recall,
        event_f1: f1(event_precision, event_recall),
        pick_precision,
        pick_recall,
        pick_f1: f1(pick_precision, pick_recall),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(event: Option<usize>, station: usize) -> TruthPick {
        TruthPick { event, station }
    }

    #[test]
    fn perfect_split_and_false_events_are_scored_by_hand() {
        // event 0: picks 0..4 on 4 stations; event 1: picks 4..8; pick 8, 9 false;
        // event 2: two picks only (not detectable)
        let truth = vec![
            t(Some(0), 0),
            t(Some(0), 1),
            t(Some(0), 2),
            t(Some(0), 3),
            t(Some(1), 0),
            t(Some(1), 1),
            t(Some(1), 2),
            t(Some(1), 3),
            t(None, 0),
            t(None, 1),
            t(Some(2), 0),
            t(Some(2), 1),
        ];
        // perfect
        let s = score_association(&truth, &[vec![0, 1, 2, 3], vec![4, 5, 6, 7]], 4, 4);
        assert_eq!((s.n_detectable, s.n_detected), (2, 2));
        assert_eq!(s.event_f1, 1.0);
        assert_eq!(s.pick_f1, 1.0);
        // event 0 split in two (second half is a duplicate => false positive), a false event,
        // and event 1 missed
        let s = score_association(&truth, &[vec![0, 1, 2], vec![3, 8], vec![8, 9, 3]], 4, 4);
        assert_eq!(s.n_matched, 1);
        assert!((s.event_precision - 1.0 / 3.0).abs() < 1e-12);
        assert!((s.event_recall - 0.5).abs() < 1e-12);
        assert!((s.pick_precision - 3.0 / 8.0).abs() < 1e-12);
        assert!((s.pick_recall - 3.0 / 8.0).abs() < 1e-12);
    }
}
