//! The `compare` chart as SVG, drawn with plotters (SVG backend only, no font dependency: text
//! is left to the SVG viewer).
//!
//! Grouped bars, one block per lock kind (first-seen order) and inside it one group per
//! over-commit ratio (vCPUs / pCPUs, ascending; then critical-section length), one bar per
//! policy; an optional interval (whiskers) and an optional dot per bar; a dashed reference line
//! (the ceiling, or `baseline`). One drawing for both the paired-rounds summary (share of the
//! ceiling with its 95 % interval) and the older `compare` JSON files (ratio to `baseline`, the
//! ratio per CPU-second as the dot).

use crate::config::{Lock, PolicyKind};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One bar.
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    /// Lock kind (the block).
    pub lock: Lock,
    /// vCPUs.
    pub vcpus: u32,
    /// pCPUs.
    pub pcpus: u32,
    /// Critical-section work (groups of a sweep).
    pub cs_iters: u32,
    /// The series: a policy, or the ceiling (`None`).
    pub policy: Option<PolicyKind>,
    /// The series is the policy with `--guest-hints off`.
    pub hints_off: bool,
    /// The bar's height, if the run passed.
    pub value: Option<f64>,
    /// Whiskers: (low, high).
    pub interval: Option<(f64, f64)>,
    /// A dot on the bar.
    pub dot: Option<f64>,
    /// Whether the run failed (the bar reads FAIL).
    pub failed: bool,
}

/// What the chart shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    /// Title.
    pub title: String,
    /// Y axis description.
    pub y_label: String,
    /// Where the dashed line is, and its legend text.
    pub reference: (f64, String),
    /// The dot's legend text, if bars have dots.
    pub dot_label: Option<String>,
    /// A line of notes under the x axis (e.g. the interval method).
    pub note: String,
    /// An extra line under a group's labels: ((lock, vcpus, pcpus, cs_iters), text).
    pub group_notes: Vec<((Lock, u32, u32, u32), String)>,
    /// A group's second label line instead of "V on P" (e.g. the other VMs of a multi-VM
    /// group): ((lock, vcpus, pcpus, cs_iters), text).
    pub sub_labels: Vec<((Lock, u32, u32, u32), String)>,
    /// The bars.
    pub bars: Vec<Bar>,
}

/// A series: a policy (with hints off?), or the ceiling.
type Series = (Option<PolicyKind>, bool);

/// Colours of the series (colour-blind-safe Okabe-Ito).
fn colour((p, hints_off): Series) -> RGBColor {
    match p {
        Some(PolicyKind::Ecs) if hints_off => RGBColor(0xCC, 0x79, 0xA7),
        Some(PolicyKind::EcsPle) if hints_off => RGBColor(0xD5, 0x5E, 0x00),
        None => RGBColor(0x56, 0xB4, 0xE9),
        Some(PolicyKind::Baseline) => RGBColor(0x99, 0x99, 0x99),
        Some(PolicyKind::Ple) => RGBColor(0xE6, 0x9F, 0x00),
        Some(PolicyKind::Ecs) => RGBColor(0x00, 0x72, 0xB2),
        Some(PolicyKind::EcsPle) => RGBColor(0x00, 0x9E, 0x73),
    }
}

fn series_name((p, hints_off): Series) -> String {
    match p {
        None => "ceiling".to_owned(),
        Some(p) if hints_off => format!("{p}, hints off"),
        Some(p) => p.name().to_owned(),
    }
}

/// The over-commit ratio `vcpus / pcpus` as an axis label: `1x`, `4x`, `1.5x`.
pub fn commit_label(vcpus: u32, pcpus: u32) -> String {
    let r = f64::from(vcpus) / f64::from(pcpus.max(1));
    if (r - r.round()).abs() < 1e-9 {
        format!("{r:.0}x")
    } else {
        let t = format!("{r:.2}");
        format!("{}x", t.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// A group of bars: (vCPUs, pCPUs, critical-section iterations).
type GroupKey = (u32, u32, u32);

fn first_seen<T: PartialEq + Copy>(it: impl Iterator<Item = T>) -> Vec<T> {
    let mut v = Vec::new();
    for x in it {
        if !v.contains(&x) {
            v.push(x);
        }
    }
    v
}

/// The chart as an SVG document.
pub fn svg(c: &Chart) -> String {
    let mut out = String::new();
    // Drawing into a String cannot fail; an error would only mean an empty picture.
    let _ = draw(c, &mut out);
    out
}

fn draw(c: &Chart, out: &mut String) -> Result<(), Box<dyn std::error::Error>> {
    let series = first_seen(c.bars.iter().map(|b| (b.policy, b.hints_off)));
    let locks = first_seen(c.bars.iter().map(|b| b.lock));
    // Per lock, its (vcpus, pcpus, cs) groups by ascending over-commit, then section length.
    let blocks: Vec<(Lock, Vec<GroupKey>)> = locks
        .iter()
        .map(|&lock| {
            let mut gs = first_seen(
                c.bars
                    .iter()
                    .filter(|b| b.lock == lock)
                    .map(|b| (b.vcpus, b.pcpus, b.cs_iters)),
            );
            gs.sort_by(|a, b| {
                (u64::from(a.0) * u64::from(b.1))
                    .cmp(&(u64::from(b.0) * u64::from(a.1)))
                    .then(a.2.cmp(&b.2))
            });
            (lock, gs)
        })
        .collect();
    let sweep = first_seen(c.bars.iter().map(|b| b.cs_iters)).len() > 1;
    let per_group = series.len().max(1) as f64 + 1.0; // bars and a gap, in bar widths
    let n_groups: usize = blocks.iter().map(|(_, g)| g.len()).sum();
    let x_max = per_group * n_groups.max(1) as f64 + blocks.len() as f64;
    let top = c
        .bars
        .iter()
        .flat_map(|b| [b.value, b.interval.map(|i| i.1), b.dot])
        .flatten()
        .fold(c.reference.0, f64::max);
    let y_max = if top <= 2.0 {
        (top * 1.1 * 4.0).ceil() / 4.0
    } else {
        (top * 1.1).ceil()
    };
    let width = (120 + (28.0 * x_max) as u32 + 200).max(960);
    let root = SVGBackend::with_string(out, (width, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&c.title, ("sans-serif", 16))
        .margin(12)
        .margin_right(200)
        .x_label_area_size(96)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(c.y_label.as_str())
        .y_label_formatter(&|v| format!("{v:.2}x"))
        .draw()?;
    let font = |size| ("sans-serif", size).into_font();
    // Text under the x axis: (x, pixels below the axis, text, size), drawn at the end.
    let mut below: Vec<(f64, i32, String, u32)> = Vec::new();
    let mut x = 0.5;
    for (lock, groups) in &blocks {
        let block_start = x;
        for &(vcpus, pcpus, cs) in groups {
            for (si, &s) in series.iter().enumerate() {
                let Some(b) = c.bars.iter().find(|b| {
                    (
                        b.lock,
                        b.vcpus,
                        b.pcpus,
                        b.cs_iters,
                        (b.policy, b.hints_off),
                    ) == (*lock, vcpus, pcpus, cs, s)
                }) else {
                    continue;
                };
                let (x0, x1) = (x + si as f64 + 0.08, x + si as f64 + 0.92);
                let mid = (x0 + x1) / 2.0;
                let label = match (b.failed, b.value) {
                    (true, _) => "FAIL".to_owned(),
                    (false, None) => "n/a".to_owned(),
                    (false, Some(v)) => {
                        chart.draw_series([Rectangle::new(
                            [(x0, 0.0), (x1, v)],
                            colour(s).filled(),
                        )])?;
                        format!("{v:.2}")
                    }
                };
                if let (Some((lo, hi)), Some(v)) = (b.interval, b.value) {
                    chart.draw_series([ErrorBar::new_vertical(mid, lo, v, hi, BLACK, 6)])?;
                }
                if let Some(d) = b.dot.filter(|_| !b.failed) {
                    chart.draw_series([Circle::new((mid, d), 3, BLACK.filled())])?;
                }
                let label_y = b.value.unwrap_or(0.0).max(b.interval.map_or(0.0, |i| i.1));
                chart.draw_series([Text::new(
                    label,
                    (mid, label_y + y_max * 0.01),
                    TextStyle::from(font(9)).pos(Pos::new(HPos::Center, VPos::Bottom)),
                )])?;
            }
            let centre = x + series.len() as f64 / 2.0;
            below.push((centre, 6, commit_label(vcpus, pcpus), 12));
            let own = c
                .sub_labels
                .iter()
                .find(|(k, _)| *k == (*lock, vcpus, pcpus, cs))
                .map(|(_, t)| t.clone());
            let sub = if let Some(t) = own {
                t
            } else if sweep {
                format!("{vcpus} on {pcpus}, cs {cs}")
            } else {
                format!("{vcpus} on {pcpus}")
            };
            below.push((centre, 22, sub, 9));
            if let Some((_, note)) = c
                .group_notes
                .iter()
                .find(|(k, _)| *k == (*lock, vcpus, pcpus, cs))
            {
                below.push((centre, 34, note.clone(), 9));
            }
            x += per_group;
        }
        below.push((
            (block_start + x - 1.0) / 2.0,
            50,
            lock.name().to_owned(),
            13,
        ));
        x += 1.0;
        if x < x_max {
            chart.draw_series(LineSeries::new(
                [(x - 1.0, 0.0), (x - 1.0, y_max)],
                RGBColor(0xbb, 0xbb, 0xbb),
            ))?;
        }
    }
    let (r, ref_label) = &c.reference;
    chart.draw_series(DashedLineSeries::new(
        [(0.0, *r), (x_max, *r)],
        5,
        4,
        BLACK.into(),
    ))?;
    // The legend, in the right margin.
    let (lx, ly) = (width as i32 - 190, 48);
    let text = |t: &str, i: i32| Text::new(t.to_owned(), (lx + 22, ly + 22 * i), font(12));
    for (i, &s) in series.iter().enumerate() {
        let y = ly + 22 * i as i32;
        root.draw(&Rectangle::new(
            [(lx, y), (lx + 14, y + 14)],
            colour(s).filled(),
        ))?;
        root.draw(&text(&series_name(s), i as i32))?;
    }
    let mut i = series.len() as i32;
    let y = ly + 22 * i + 7;
    for dash in 0..2 {
        let x = lx + 8 * dash;
        root.draw(&PathElement::new([(x, y), (x + 5, y)], BLACK))?;
    }
    root.draw(&text(ref_label, i))?;
    if let Some(d) = &c.dot_label {
        i += 1;
        root.draw(&Circle::new((lx + 7, ly + 22 * i + 7), 3, BLACK.filled()))?;
        root.draw(&text(d, i))?;
    }
    below.push((x_max / 2.0, 72, c.note.clone(), 11));
    for (x, dy, text, size) in below {
        let (px, py) = chart.backend_coord(&(x, 0.0));
        let style = TextStyle::from(font(size)).pos(Pos::new(HPos::Center, VPos::Top));
        root.draw(&Text::new(text, (px, py + dy), style))?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::LockKind;

    fn bar(lock: LockKind, vcpus: u32, policy: Option<PolicyKind>, value: f64) -> Bar {
        Bar {
            lock: Lock(lock),
            vcpus,
            pcpus: 2,
            cs_iters: 100,
            policy,
            hints_off: false,
            value: Some(value),
            interval: Some((value * 0.9, value * 1.1)),
            dot: None,
            failed: false,
        }
    }

    #[test]
    fn draws_bars_intervals_labels_and_legend_in_group_order() {
        let bars = vec![
            bar(LockKind::Mutex, 8, Some(PolicyKind::Baseline), 0.5),
            bar(LockKind::Mutex, 8, Some(PolicyKind::Ecs), 0.95),
            bar(LockKind::Mutex, 2, Some(PolicyKind::Baseline), 1.0),
            Bar {
                failed: true,
                value: None,
                ..bar(LockKind::Rcu, 8, Some(PolicyKind::Ecs), 0.0)
            },
        ];
        let c = Chart {
            title: "share of the ceiling".into(),
            y_label: "ops/s / ceiling ops/s".into(),
            reference: (1.0, "ceiling".into()),
            dot_label: None,
            note: "medians of paired rounds".into(),
            group_notes: vec![((Lock(LockKind::Mutex), 8, 2, 100), "ecs GP ÷2.0".into())],
            sub_labels: Vec::new(),
            bars,
        };
        let s = svg(&c);
        // plotters writes each text on a line of its own.
        let t = |text: &str| format!(">\n{text}\n</text>");
        assert!(
            s.starts_with("<svg") && s.trim_end().ends_with("</svg>"),
            "{s}"
        );
        let ecs_fill = "fill=\"#0072B2\"";
        assert!(s.contains(ecs_fill), "ecs's colour is used");
        assert!(s.contains(&t("0.95")) && s.contains(&t("FAIL")) && s.contains(&t("ceiling")));
        // Within the mutex block, 2 on 2 (1x) comes before 8 on 2 (4x), though given later.
        assert!(s.find(&t("1x")).unwrap() < s.find(&t("4x")).unwrap());
        assert!(s.find(&t("mutex")).unwrap() < s.find(&t("rcu")).unwrap());
        assert!(s.contains(&t("medians of paired rounds")) && s.contains(&t("ecs GP ÷2.0")));
        assert_eq!(commit_label(3, 2), "1.5x");
        assert_eq!(commit_label(1, 3), "0.33x");
        assert_eq!(commit_label(16, 2), "8x");
    }
}
