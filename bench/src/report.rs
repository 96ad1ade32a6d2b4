//! Turning repeated runs into medians and spreads, and recording them: a table on stdout, JSON
//! under `target/bench/`, and a section appended to `docs/BENCHMARKS.md`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::machine::Machine;

/// One value measured once per run: its median and range over the runs.
#[derive(Debug, Clone, Serialize)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: Vec<f64>,
}

impl Stat {
    pub fn of(runs: Vec<f64>) -> Self {
        let mut sorted = runs.clone();
        sorted.sort_by(f64::total_cmp);
        Self {
            median: percentile(&sorted, 50.0),
            min: sorted.first().copied().unwrap_or(f64::NAN),
            max: sorted.last().copied().unwrap_or(f64::NAN),
            runs,
        }
    }
}

/// The `p`th percentile of an ascending slice (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One line of the results table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub setup: String,
    pub metric: String,
    pub unit: String,
    pub value: Stat,
    /// The reference measured in the same run, if this metric has one.
    pub reference: Option<Reference>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Reference {
    pub name: String,
    pub value: Stat,
    /// Median of the metric over median of the reference.
    pub ratio: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub command: String,
    pub date: String,
    pub machine: Machine,
    pub parameters: serde_json::Value,
    pub notes: Vec<String>,
    pub rows: Vec<Row>,
}

fn fmt(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn spread(s: &Stat) -> String {
    format!("{}–{}", fmt(s.min), fmt(s.max))
}

impl Report {
    /// The results as a Markdown table (also what is printed).
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| setup | metric | median | range | reference | ref. median | ratio |\n\
             |---|---|---|---|---|---|---|\n",
        );
        for row in &self.rows {
            let (name, median, ratio) = match &row.reference {
                Some(r) => (
                    r.name.clone(),
                    format!("{} {}", fmt(r.value.median), row.unit),
                    format!("{:.2}", r.ratio),
                ),
                None => ("—".into(), "—".into(), "—".into()),
            };
            out.push_str(&format!(
                "| {} | {} | {} {} | {} | {} | {} | {} |\n",
                row.setup,
                row.metric,
                fmt(row.value.median),
                row.unit,
                spread(&row.value),
                name,
                median,
                ratio
            ));
        }
        out
    }

    /// Writes `target/bench/<scenario>-<date>.json` under `root`; returns its path.
    pub fn write_json(&self, root: &Path) -> anyhow::Result<PathBuf> {
        let dir = root.join("target/bench");
        std::fs::create_dir_all(&dir)?;
        let stamp = self.date.replace([':', ' '], "-");
        let path = dir.join(format!("{}-{stamp}.json", self.scenario));
        std::fs::write(&path, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Appends this run as a section of `docs/BENCHMARKS.md` under `root`, showing `chart` (a
    /// path under `root/docs`) below the table.
    pub fn append_markdown(&self, root: &Path, chart: Option<&Path>) -> anyhow::Result<PathBuf> {
        let path = root.join("docs/BENCHMARKS.md");
        let mut section = format!(
            "\n## `{}` — {}\n\n- Command: `{}`\n- Machine: {}\n- Parameters: `{}`\n",
            self.scenario,
            self.date,
            self.command,
            self.machine.describe(),
            self.parameters
        );
        for note in &self.notes {
            section.push_str(&format!("- {note}\n"));
        }
        section.push('\n');
        section.push_str(&self.table());
        if let Some(chart) = chart.and_then(|c| c.strip_prefix(root.join("docs")).ok()) {
            section.push_str(&format!(
                "\n![{} results]({})\n",
                self.scenario,
                chart.display()
            ));
        }
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.write_all(section.as_bytes())?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn stat_reports_median_and_range() {
        let s = Stat::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(s.runs, vec![3.0, 1.0, 2.0]);
    }
}
