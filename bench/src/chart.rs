//! Pictures of a report: one SVG per run under `docs/bench/`, linked from its section of
//! `docs/BENCHMARKS.md`, a panel per metric, a bar per
//! setup for StreamSpace's median beside the reference's median measured in the same run, and a
//! line from the fastest to the slowest run of each. Text is drawn with DejaVu Sans from the
//! system (Debian's `fonts-dejavu-core`, which `scripts/test` installs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::report::{Report, Row, Stat};

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const OURS: RGBColor = RGBColor(0x1f, 0x6f, 0xb4);
const REFERENCE: RGBColor = RGBColor(0x9a, 0x9a, 0x9a);

/// Makes DejaVu Sans the chart's "sans-serif" (once per process).
fn font() -> anyhow::Result<()> {
    static LOADED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            let bytes = std::fs::read(FONT).map_err(|e| format!("reading {FONT}: {e}"))?;
            // register_font keeps the bytes for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| format!("{FONT} is not a font ab_glyph can read"))
        })
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

/// Draws `report` to `docs/bench/<scenario>-<date>.svg` under `root`; returns its path.
pub fn draw(report: &Report, root: &Path) -> anyhow::Result<PathBuf> {
    font()?;
    let dir = root.join("docs/bench");
    std::fs::create_dir_all(&dir)?;
    let stamp = report.date.replace([':', ' '], "-");
    let path = dir.join(format!("{}-{stamp}.svg", report.scenario));
    let mut panels: BTreeMap<(String, String), Vec<&Row>> = BTreeMap::new();
    for row in &report.rows {
        panels
            .entry((row.metric.clone(), row.unit.clone()))
            .or_default()
            .push(row);
    }
    let height = 60 + 260 * panels.len().max(1) as u32;
    {
        let root_area = SVGBackend::new(&path, (900, height)).into_drawing_area();
        root_area.fill(&WHITE).map_err(draw_error)?;
        let title = format!("{} — {}", report.scenario, report.date);
        let root_area = root_area
            .titled(&title, ("sans-serif", 22))
            .map_err(draw_error)?;
        let areas = root_area.split_evenly((panels.len().max(1), 1));
        for (((metric, unit), rows), area) in panels.iter().zip(areas.iter()) {
            panel(area, metric, unit, rows)?;
        }
        root_area.present().map_err(draw_error)?;
    }
    Ok(path)
}

fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    metric: &str,
    unit: &str,
    rows: &[&Row],
) -> anyhow::Result<()> {
    let top = rows
        .iter()
        .flat_map(|r| std::iter::once(r.value.max).chain(r.reference.as_ref().map(|x| x.value.max)))
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let top = if top > 0.0 { top * 1.15 } else { 1.0 };
    let n = rows.len() as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{metric} ({unit})"), ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..n, 0.0..top)
        .map_err(draw_error)?;
    let labels: Vec<String> = rows.iter().map(|r| r.setup.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(rows.len().max(1) * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 1e-6 {
                labels.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(unit)
        .draw()
        .map_err(draw_error)?;
    for (i, row) in rows.iter().enumerate() {
        let x = i as f64;
        bar(&mut chart, x + 0.15, x + 0.5, &row.value, OURS)?;
        if let Some(reference) = &row.reference {
            bar(&mut chart, x + 0.5, x + 0.85, &reference.value, REFERENCE)?;
        }
    }
    let legend: Vec<(&str, RGBColor)> = if rows.iter().any(|r| r.reference.is_some()) {
        let name = rows
            .iter()
            .find_map(|r| r.reference.as_ref().map(|x| x.name.as_str()))
            .unwrap_or("reference");
        vec![("StreamSpace", OURS), (name, REFERENCE)]
    } else {
        vec![("StreamSpace", OURS)]
    };
    for (name, color) in legend {
        chart
            .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())
            .map_err(draw_error)?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(draw_error)?;
    Ok(())
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// A bar at the median from `x0` to `x1`, with a line over the runs' range.
fn bar(
    chart: &mut Chart<'_, '_>,
    x0: f64,
    x1: f64,
    stat: &Stat,
    color: RGBColor,
) -> anyhow::Result<()> {
    if !stat.median.is_finite() {
        return Ok(());
    }
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(x0, 0.0), (x1, stat.median)],
            color.filled(),
        )))
        .map_err(draw_error)?;
    let mid = (x0 + x1) / 2.0;
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(mid, stat.min), (mid, stat.max)],
            BLACK.stroke_width(2),
        )))
        .map_err(draw_error)?;
    Ok(())
}

fn draw_error<E: std::error::Error + Send + Sync + 'static>(
    e: DrawingAreaErrorKind<E>,
) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Reference;
    use anyhow::Context;

    #[test]
    fn draws_a_panel_per_metric_with_bars_and_labels() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let row = |setup: &str, metric: &str, ours: f64, reference: Option<f64>| Row {
            setup: setup.into(),
            metric: metric.into(),
            unit: "ops/s".into(),
            value: Stat::of(vec![ours * 0.9, ours, ours * 1.1]),
            reference: reference.map(|r| Reference {
                name: "pgbench".into(),
                value: Stat::of(vec![r]),
                ratio: ours / r,
            }),
        };
        let report = Report {
            scenario: "commands".into(),
            command: "cargo run -p streamspace-bench --release -- commands".into(),
            date: "2026-12-03 18:00 UTC".into(),
            machine: crate::machine::Machine::read(),
            parameters: serde_json::json!({}),
            notes: vec![],
            rows: vec![
                row("one replica", "throughput", 1357.0, Some(4800.0)),
                row("across replicas", "throughput", 1142.0, Some(4800.0)),
                row("one replica", "p99 latency", 10.7, None),
            ],
        };
        let path = draw(&report, dir.path())?;
        let svg = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        for text in [
            "throughput (ops/s)",
            "p99 latency (ops/s)",
            "one replica",
            "pgbench",
        ] {
            assert!(svg.contains(text), "the chart lacks {text:?}");
        }
        // Three bars of ours, two of the reference, and the background: at least six rects.
        assert!(svg.matches("<rect").count() >= 6);
        Ok(())
    }
}
