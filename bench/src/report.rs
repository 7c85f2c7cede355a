//! The results: a table with ratios, JSON, and a chart.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::scenarios::Measurement;

/// One row: yubin against the best reference for a scenario variant.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Scenario.
    pub scenario: String,
    /// Variant.
    pub variant: String,
    /// Unit of the figures.
    pub unit: String,
    /// yubin's figure.
    pub yubin: Option<f64>,
    /// The best reference's figure and name (Dovecot's best setup for
    /// POP3, Postfix for SMTP).
    pub reference: Option<(String, f64)>,
    /// The responder's figure (the client's ceiling), where measured.
    pub responder: Option<f64>,
    /// How many times better yubin is than the reference (> 1: yubin wins).
    pub ratio: Option<f64>,
    /// The target for `ratio`, if any.
    pub target: Option<String>,
    /// Whether the target is met.
    pub met: Option<bool>,
    /// CPU seconds of yubin and of the load generator in yubin's (first) run.
    pub yubin_cpu: Option<(f64, f64)>,
    /// On PostgreSQL: the statements (each one round trip) the node sent
    /// the database per operation (session, message, RETR), median.
    pub round_trips: Option<f64>,
}

/// The variant suffix of the rows measured on the PostgreSQL backend.
pub const POSTGRES: &str = " [postgres]";

fn target(scenario: &str, variant: &str) -> Option<(f64, &'static str)> {
    if let Some(variant) = variant.strip_suffix(POSTGRES) {
        // Issue 16: the PostgreSQL backend against the same references.
        return Some(match (scenario, variant) {
            ("login", v) if !v.starts_with("tls") => (2.0, "≥ 2×"),
            ("retrieval", _) => (1.0, "≥ 1×"),
            ("big", "50MB RETR") => (1.5, "≥ 1.5×"),
            ("smtp", v) if !v.contains("DKIM") && !v.contains("rspamd") => (2.0, "≥ 2×"),
            _ => return None,
        });
    }
    Some(match (scenario, variant) {
        ("login", v) if !v.starts_with("tls") => (2.5, "≥ 2.5×"),
        ("retrieval", _) => (1.3, "≥ 1.3×"),
        ("big", "50MB RETR") => (2.5, "≥ 2.5×"),
        ("big", "50MB RETR tls") => (1.5, "≥ 1.5×"),
        ("large", v) if v.ends_with("cold login+STAT") => (2.0, "≤ ½ time"),
        ("idle", v) if !v.starts_with("tls") => (10.0, "≤ ⅒ memory"),
        // Issue 15: with rspamd on both sides, the ratio is reported only.
        ("smtp", v) if v.contains("rspamd") => return None,
        // Issue 14 (signing) and issue 15 (SPF, DKIM, DMARC checked).
        ("smtp", v) if v.contains("DKIM") => (3.0, "≥ 3×"),
        ("smtp", _) => (1.5, "≥ 1.5×"),
        _ => return None,
    })
}

/// Groups measurements (medians over runs) into rows.
pub fn rows(measurements: &[Measurement]) -> Vec<Row> {
    let mut groups: BTreeMap<(String, String), Vec<&Measurement>> = BTreeMap::new();
    let mut order = Vec::new();
    for m in measurements {
        let key = (m.scenario.clone(), m.variant.clone());
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(m);
    }
    let mut rows = Vec::new();
    for key in order {
        let group = &groups[&key];
        let higher = group[0].higher_is_better;
        let median = |server: &str| -> Option<f64> {
            let mut values: Vec<f64> = group
                .iter()
                .filter(|m| m.server == server)
                .map(|m| m.value)
                .collect();
            values.sort_by(f64::total_cmp);
            values.get(values.len() / 2).copied()
        };
        let responder = median("responder");
        let mut reference: Option<(String, f64)> = None;
        for name in [
            "dovecot",
            "dovecot-reuse-login",
            "dovecot-reuse-all",
            "postfix",
        ] {
            if let Some(v) = median(name) {
                let better = match &reference {
                    None => true,
                    Some((_, best)) => {
                        if higher {
                            v > *best
                        } else {
                            v < *best
                        }
                    }
                };
                if better {
                    reference = Some((name.to_owned(), v));
                }
            }
        }
        let (scenario, base_variant) = key;
        for (server, suffix) in [("yubin", ""), ("yubin-pg", POSTGRES)] {
            let yubin = median(server);
            // A row per backend measured (the Maildir row also when
            // neither was, for the references).
            let pg_measured = median("yubin-pg").is_some();
            if yubin.is_none() && (server == "yubin-pg" || pg_measured) {
                continue;
            }
            let variant = format!("{base_variant}{suffix}");
            let ratio = match (yubin, &reference) {
                (Some(y), Some((_, r))) if y > 0.0 && *r > 0.0 => {
                    Some(if higher { y / r } else { r / y })
                }
                _ => None,
            };
            let mut goal = target(&scenario, &variant).map(|(v, text)| (v, text.to_owned()));
            let mut met = match (ratio, &goal) {
                (Some(r), Some((t, _))) => Some(r >= *t),
                _ => None,
            };
            // Absolute target: a warm login+STAT on 100,000 messages in ≤ 50 ms.
            if scenario == "large" && base_variant.ends_with("warm login+STAT") {
                goal = Some((0.0, "≤ 50 ms".to_owned()));
                met = yubin.map(|y| y <= 50.0);
            }
            // And ≥ 40 % of the responder for the big RETR.
            if scenario == "big"
                && base_variant == "50MB RETR"
                && suffix.is_empty()
                && let (Some(y), Some(r)) = (yubin, responder)
            {
                met = met.map(|m| m && y >= 0.4 * r);
                goal = goal.map(|(v, t)| (v, format!("{t}, ≥ 40% of responder")));
            }
            let yubin_cpu = group.iter().find(|m| m.server == server).and_then(|m| {
                Some((
                    m.details.get("server_cpu_s")?.as_f64()?,
                    m.details.get("client_cpu_s")?.as_f64()?,
                ))
            });
            let mut trips: Vec<f64> = group
                .iter()
                .filter(|m| m.server == server)
                .filter_map(|m| m.details.get("db_round_trips")?.as_f64())
                .collect();
            trips.sort_by(f64::total_cmp);
            rows.push(Row {
                yubin_cpu,
                unit: group[0].unit.clone(),
                scenario: scenario.clone(),
                variant,
                yubin,
                reference: reference.clone(),
                responder,
                ratio,
                target: goal.map(|(_, t)| t),
                met,
                round_trips: trips.get(trips.len() / 2).copied(),
            });
        }
    }
    rows
}

fn number(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The table as Markdown.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | variant | unit | yubin | reference (best setup) | ratio | responder | target | met | CPU s yubin / load gen. | DB round trips / op |\n|---|---|---|---:|---:|---:|---:|---|---|---:|---:|\n",
    );
    for row in rows {
        let reference = row
            .reference
            .as_ref()
            .map_or("–".to_owned(), |(n, v)| format!("{} ({n})", number(*v)));
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            row.scenario,
            row.variant,
            row.unit,
            row.yubin.map_or("–".into(), number),
            reference,
            row.ratio.map_or("–".into(), |r| format!("{r:.2}×")),
            row.responder.map_or("–".into(), number),
            row.target.clone().unwrap_or_else(|| "–".into()),
            row.met.map_or("–", |m| if m { "yes" } else { "**no**" }),
            row.yubin_cpu.map_or("–".into(), |(server, client)| format!(
                "{server:.2} / {client:.2}"
            )),
            row.round_trips.map_or("–".into(), number),
        ));
    }
    out
}

/// Writes the JSON with every measurement and the rows.
pub fn write_json(
    path: &Path,
    measurements: &[Measurement],
    rows: &[Row],
    machine: &serde_json::Value,
) -> Result<()> {
    let value =
        serde_json::json!({ "machine": machine, "rows": rows, "measurements": measurements });
    std::fs::write(path, serde_json::to_string_pretty(&value)?)
        .with_context(|| format!("write {}", path.display()))
}

/// Draws the ratios as bars, with the targets as marks.
pub fn chart(path: &Path, rows: &[Row], font: &Path) -> Result<()> {
    use plotters::prelude::*;
    let bytes = std::fs::read(font)
        .with_context(|| format!("font {} (install fonts-dejavu-core)", font.display()))?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("cannot load the font {}", font.display()))?;
    // First row at the top.
    let rows: Vec<&Row> = rows.iter().filter(|r| r.ratio.is_some()).rev().collect();
    let max = rows.iter().filter_map(|r| r.ratio).fold(3.0_f64, f64::max) * 1.5;
    let height = 90 + 30 * rows.len() as u32;
    let root = BitMapBackend::new(path, (1100, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "yubin against the reference: best Dovecot setup, or Postfix (× better; log scale; | = target)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(330)
        .build_cartesian_2d(
            (0.25..max).log_scale(),
            (0..rows.len().max(1) - 1).into_segmented(),
        )?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(rows.len())
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => rows
                .get(*i)
                .map_or(String::new(), |r| format!("{} {}", r.scenario, r.variant)),
            _ => String::new(),
        })
        .x_label_formatter(&|x| format!("{x}×"))
        .x_desc("yubin ÷ Dovecot")
        .draw()?;
    chart.draw_series(rows.iter().enumerate().map(|(i, r)| {
        let ratio = r.ratio.unwrap_or(0.25).max(0.25);
        let color = match r.met {
            Some(false) => RGBColor(200, 60, 60),
            Some(true) => RGBColor(60, 150, 90),
            None => RGBColor(60, 120, 200),
        };
        let mut bar = Rectangle::new(
            [
                (0.25, SegmentValue::Exact(i)),
                (ratio, SegmentValue::Exact(i + 1)),
            ],
            color.filled(),
        );
        bar.set_margin(4, 4, 0, 0);
        bar
    }))?;
    chart.draw_series(rows.iter().enumerate().filter_map(|(i, r)| {
        let t = target(&r.scenario, &r.variant)?.0;
        Some(PathElement::new(
            vec![(t, SegmentValue::Exact(i)), (t, SegmentValue::Exact(i + 1))],
            BLACK.stroke_width(3),
        ))
    }))?;
    chart.draw_series(std::iter::once(PathElement::new(
        vec![
            (1.0, SegmentValue::Exact(0)),
            (1.0, SegmentValue::Exact(rows.len())),
        ],
        BLACK.mix(0.5),
    )))?;
    root.present()?;
    Ok(())
}
