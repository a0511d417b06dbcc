//! The metrics docs/reference.md promises, read from its tables, and what a `/metrics` scrape serves, read from
//! the OpenMetrics text both binaries write — so a test can hold each to the other.
//!
//! A documented metric is a table row `| `name` | type | `label`, … | meaning |` (see "Metrics tables" in the
//! reference). A scrape groups its series under their `# TYPE` family: a counter's series are `<family>_total`,
//! a histogram's `<family>_bucket`/`_sum`/`_count` (the buckets' `le` is not one of its labels).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context as _;

/// Label names of one series.
pub type LabelSet = BTreeSet<String>;

/// A metric as documented, or as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    /// `counter`, `gauge` or `histogram`.
    pub kind: String,
    /// Documented: the one label set of its series. Served: every label set its series have.
    pub label_sets: BTreeSet<LabelSet>,
}

/// The rows of the metrics tables of `reference` (docs/reference.md), by the name a query uses.
pub fn documented(reference: &str) -> anyhow::Result<BTreeMap<String, Metric>> {
    let mut out = BTreeMap::new();
    for line in reference.lines().filter(|l| l.starts_with("| `dittofs_")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let [_, name, kind, labels, meaning, _] = cells[..] else { anyhow::bail!("not 4 cells: {line}") };
        anyhow::ensure!(!meaning.is_empty(), "no meaning: {line}");
        let name = name.trim_matches('`').to_owned();
        let labels: LabelSet = match labels {
            "—" => LabelSet::new(),
            list => list.split(',').map(|l| l.trim().trim_matches('`').to_owned()).collect(),
        };
        let metric = Metric { kind: kind.to_owned(), label_sets: BTreeSet::from([labels]) };
        anyhow::ensure!(out.insert(name.clone(), metric).is_none(), "{name} is documented twice");
    }
    Ok(out)
}

/// The `dittofs_*` families of a scrape, by the name a query uses (a counter with `_total`).
pub fn served(text: &str) -> anyhow::Result<BTreeMap<String, Metric>> {
    let mut kinds = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (family, kind) = rest.split_once(' ').with_context(|| format!("bad TYPE line: {line}"))?;
            kinds.insert(family.to_owned(), kind.to_owned());
        }
    }
    let mut out: BTreeMap<String, Metric> = BTreeMap::new();
    for (family, kind) in kinds.iter().filter(|(f, _)| f.starts_with("dittofs_")) {
        let name = if kind == "counter" { format!("{family}_total") } else { family.clone() };
        out.insert(name, Metric { kind: kind.clone(), label_sets: BTreeSet::new() });
    }
    for line in text.lines().filter(|l| l.starts_with("dittofs_")) {
        let (series, labels) = parse_sample(line)?;
        let (family, kind) = family_of(&kinds, &series).with_context(|| format!("no # TYPE for {line}"))?;
        let name = if kind == "counter" { format!("{family}_total") } else { family.to_owned() };
        let labels = labels.into_iter().filter(|l| !(kind == "histogram" && l == "le")).collect();
        out.get_mut(&name).context("families are filled above")?.label_sets.insert(labels);
    }
    Ok(out)
}

/// The family a series belongs to: itself, or itself without the suffix its type adds.
fn family_of<'a>(kinds: &'a BTreeMap<String, String>, series: &str) -> Option<(&'a str, &'a str)> {
    let suffixes: &[&str] = &["", "_total", "_bucket", "_sum", "_count", "_created"];
    suffixes.iter().find_map(|suffix| {
        let (family, kind) = kinds.get_key_value(series.strip_suffix(suffix)?)?;
        Some((family.as_str(), kind.as_str()))
    })
}

/// `name{a="x",b="y"} value` → (name, {a, b}). Label values are skipped, quotes escaped with `\` included.
fn parse_sample(line: &str) -> anyhow::Result<(String, Vec<String>)> {
    let Some((name, rest)) = line.split_once('{') else {
        let name = line.split_whitespace().next().context("empty sample line")?;
        return Ok((name.to_owned(), Vec::new()));
    };
    let (mut labels, mut chars) = (Vec::new(), rest.chars());
    loop {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        anyhow::ensure!(chars.next() == Some('"'), "a label value must be quoted: {line}");
        let mut escaped = false;
        for c in chars.by_ref() {
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => break,
                _ => escaped = false,
            }
        }
        labels.push(key.trim_start_matches(',').to_owned());
        match chars.next() {
            Some(',') => continue,
            Some('}') => return Ok((name.to_owned(), labels)),
            other => anyhow::bail!("unexpected {other:?} after a label value: {line}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(labels: &[&str]) -> LabelSet {
        labels.iter().map(|l| (*l).to_owned()).collect()
    }

    #[test]
    fn a_scrape_groups_series_under_their_families() {
        let text = "# HELP dittofs_x_polls Polls.\n# TYPE dittofs_x_polls counter\n\
                    dittofs_x_polls_total{kind=\"full\",result=\"o,k\\\"\"} 3\n\
                    # TYPE dittofs_x_latency_seconds histogram\n# UNIT dittofs_x_latency_seconds seconds\n\
                    dittofs_x_latency_seconds_sum{kind=\"ready\"} 0.1\n\
                    dittofs_x_latency_seconds_bucket{le=\"0.5\",kind=\"ready\"} 1\n\
                    # TYPE dittofs_x_up gauge\ndittofs_x_up 1\n# TYPE dittofs_x_empty counter\n\
                    # TYPE other gauge\nother 2\n# EOF\n";
        let served = served(text).unwrap();
        let names: Vec<&str> = served.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["dittofs_x_empty_total", "dittofs_x_latency_seconds", "dittofs_x_polls_total", "dittofs_x_up"]
        );
        assert_eq!(served["dittofs_x_polls_total"].label_sets, BTreeSet::from([set(&["kind", "result"])]));
        assert_eq!(served["dittofs_x_latency_seconds"].label_sets, BTreeSet::from([set(&["kind"])]));
        assert_eq!(served["dittofs_x_latency_seconds"].kind, "histogram");
        assert_eq!(served["dittofs_x_up"].label_sets, BTreeSet::from([set(&[])]));
        assert!(served["dittofs_x_empty_total"].label_sets.is_empty(), "a family without series yet");
        assert!(super::served("dittofs_y 1\n").is_err(), "a series without # TYPE");
    }

    #[test]
    fn the_reference_tables_parse_into_well_formed_rows() {
        let text = std::fs::read_to_string(crate::deploy::repo_root().join("docs/reference.md")).unwrap();
        let documented = documented(&text).unwrap();
        assert!(documented.keys().any(|n| n.starts_with("dittofs_controller_")), "{documented:?}");
        assert!(documented.keys().any(|n| n.starts_with("dittofs_agent_")), "{documented:?}");
        for (name, metric) in &documented {
            assert!(["counter", "gauge", "histogram"].contains(&metric.kind.as_str()), "{name}: {}", metric.kind);
            assert_eq!(
                name.ends_with("_total"),
                metric.kind == "counter",
                "{name}: counters, and only they, end in _total"
            );
            let labels = metric.label_sets.first().unwrap();
            assert!(
                labels.iter().all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_lowercase() || c == '_')),
                "{name}: {labels:?}"
            );
        }
    }
}
