//! The benches' plots as self-contained SVG (no plotting library, no fonts to install): per-stage latency
//! as bars (median) with a tick at p99, and figures against N as points joined by lines.

use std::fmt::Write as _;

const WIDTH: f64 = 760.0;
const LEFT: f64 = 330.0;
const RIGHT: f64 = 40.0;
const ROW: f64 = 22.0;
const TOP: f64 = 48.0;

/// Escapes text for SVG.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A round upper bound of the axis for `max` (1, 2 or 5 times a power of ten).
fn axis_max(max: f64) -> f64 {
    if !max.is_finite() || max <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * power).find(|v| *v >= max).unwrap_or(10.0 * power)
}

/// One group of bars: a title and (label, median, p99) rows in `unit`.
#[derive(Debug)]
pub struct Bars<'a> {
    pub title: &'a str,
    pub rows: Vec<(String, f64, f64)>,
}

/// Horizontal bars of the medians with a tick at each p99, groups one under the other, one shared axis.
pub fn stage_bars(title: &str, unit: &str, groups: &[Bars<'_>]) -> String {
    let max = groups.iter().flat_map(|g| &g.rows).map(|(_, m, p)| m.max(*p)).fold(0.0, f64::max);
    let top = axis_max(max);
    let plot = WIDTH - LEFT - RIGHT;
    let x = |v: f64| LEFT + plot * (v.max(0.0) / top).min(1.0);
    let rows: usize = groups.iter().map(|g| g.rows.len() + 1).sum();
    let height = TOP + ROW * rows as f64 + 40.0;
    let mut svg = header(height, title);
    let _ = write!(
        svg,
        r##"<text x="{LEFT}" y="34" font-size="11" fill="#555">bar: median · tick: p99 · {}</text>"##,
        esc(unit)
    );
    let mut y = TOP;
    for group in groups {
        let _ = write!(svg, r#"<text x="8" y="{:.1}" font-weight="bold">{}</text>"#, y + 15.0, esc(group.title));
        y += ROW;
        for (label, median, p99) in &group.rows {
            let _ = write!(
                svg,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect x="{LEFT}" y="{:.1}" width="{:.1}" height="14" fill="#4a7fb5"/><line x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#c0392b" stroke-width="2"/><text x="{:.1}" y="{:.1}" font-size="10" fill="#333">{median:.1}</text>"##,
                LEFT - 6.0,
                y + 12.0,
                esc(label),
                y + 1.0,
                x(*median) - LEFT,
                x(*p99),
                x(*p99),
                y - 1.0,
                y + 17.0,
                x(*median) + 3.0,
                y + 11.0,
            );
            y += ROW;
        }
    }
    axis(&mut svg, y + 4.0, top, plot, unit);
    svg + "</svg>\n"
}

/// One series of points against N.
#[derive(Debug)]
pub struct Series<'a> {
    pub label: &'a str,
    pub unit: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// One small chart per series (each its own y axis), x = N.
pub fn against_n(title: &str, series: &[Series<'_>]) -> String {
    let chart = 180.0;
    let height = TOP + (chart + 50.0) * series.len() as f64;
    let mut svg = header(height, title);
    let max_n = series.iter().flat_map(|s| &s.points).map(|(n, _)| *n).fold(0.0, f64::max);
    let plot = WIDTH - 120.0 - RIGHT;
    for (i, s) in series.iter().enumerate() {
        let y0 = TOP + (chart + 50.0) * i as f64 + 20.0;
        let top = axis_max(s.points.iter().map(|(_, v)| *v).fold(0.0, f64::max));
        let px = |n: f64| 120.0 + plot * n / max_n.max(1.0);
        let py = |v: f64| y0 + chart - chart * (v / top).min(1.0);
        let _ = write!(
            svg,
            r#"<text x="8" y="{:.1}" font-weight="bold">{} ({})</text>"#,
            y0 - 6.0,
            esc(s.label),
            esc(s.unit)
        );
        let _ = write!(
            svg,
            r##"<line x1="120" x2="120" y1="{y0:.1}" y2="{:.1}" stroke="#999"/><line x1="120" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#999"/><text x="114" y="{:.1}" text-anchor="end" font-size="10">{top}</text><text x="114" y="{:.1}" text-anchor="end" font-size="10">0</text>"##,
            y0 + chart,
            WIDTH - RIGHT,
            y0 + chart,
            y0 + chart,
            y0 + 10.0,
            y0 + chart
        );
        let path: Vec<String> = s.points.iter().map(|(n, v)| format!("{:.1},{:.1}", px(*n), py(*v))).collect();
        let _ =
            write!(svg, r##"<polyline points="{}" fill="none" stroke="#4a7fb5" stroke-width="2"/>"##, path.join(" "));
        for (n, v) in &s.points {
            let _ = write!(
                svg,
                r##"<circle cx="{:.1}" cy="{:.1}" r="4" fill="#4a7fb5"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">N={n}</text>"##,
                px(*n),
                py(*v),
                px(*n),
                py(*v) - 8.0,
                label(*v),
                px(*n),
                y0 + chart + 14.0,
            );
        }
    }
    svg + "</svg>\n"
}

/// A value as its point's label: two decimals under 10 (0.18 s, not 0.2), one above.
fn label(v: f64) -> String {
    if v.abs() < 10.0 { format!("{v:.2}") } else { format!("{v:.1}") }
}

fn header(height: f64, title: &str) -> String {
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="8" y="18" font-size="15" font-weight="bold">{}</text>"##,
        esc(title)
    )
}

fn axis(svg: &mut String, y: f64, top: f64, plot: f64, unit: &str) {
    let _ = write!(svg, r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#999"/>"##, LEFT + plot);
    for i in 0..=4 {
        let v = top * f64::from(i) / 4.0;
        let x = LEFT + plot * f64::from(i) / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{y:.1}" y2="{:.1}" stroke="#999"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" font-size="10">{v} {}</text>"##,
            y + 4.0,
            y + 16.0,
            esc(unit)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_round_up_to_one_two_or_five() {
        assert_eq!(axis_max(0.7), 1.0);
        assert_eq!(axis_max(130.0), 200.0);
        assert_eq!(axis_max(4.2), 5.0);
        assert_eq!(axis_max(0.0), 1.0);
        assert_eq!(axis_max(f64::NAN), 1.0);
    }

    #[test]
    fn bars_hold_every_row_escaped_and_scaled() {
        let groups = [Bars { title: "off <a>", rows: vec![("wait".into(), 100.0, 190.0), ("apply".into(), 5.0, 9.0)] }];
        let svg = stage_bars("Stages", "ms", &groups);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("off &lt;a&gt;") && svg.contains(">wait<") && svg.contains(">apply<"));
        // 100 of an axis to 200 is half of the plot's width.
        assert!(svg.contains(&format!(r#"width="{:.1}""#, (WIDTH - LEFT - RIGHT) / 2.0)), "{svg}");
    }

    #[test]
    fn points_are_placed_for_each_n() {
        let series = [Series { label: "RSS", unit: "MiB", points: vec![(100.0, 20.0), (1000.0, 40.0)] }];
        let svg = against_n("Scale", &series);
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("N=1000") && svg.contains("RSS (MiB)"));
        assert!(svg.contains(">20.0<") && svg.contains(">40.0<"), "{svg}");
        assert_eq!((label(0.18), label(74.66)), ("0.18".to_owned(), "74.7".to_owned()));
    }
}
