//! Charts as inline SVG, drawn on the server: no chart library, no script,
//! and labels escaped like any other text on the page.

use maud::{Markup, html};

/// One bar of a [`bars`] chart.
pub struct Bar {
    pub label: String,
    pub value: u64,
    /// Drawn in the alarm colour (failures, quarantined devices).
    pub alarm: bool,
}

const WIDTH: u32 = 520;
const ROW: u32 = 24;
const LABEL: u32 = 170;

/// A horizontal bar chart; the caption doubles as the accessible name.
pub fn bars(caption: &str, bars: &[Bar]) -> Markup {
    let max = bars.iter().map(|b| b.value).max().unwrap_or(0).max(1);
    let height = ROW * u32::try_from(bars.len()).unwrap_or(0).max(1) + 8;
    let room = f64::from(WIDTH - LABEL - 70);
    html! {
        figure {
            svg class="chart bars" viewBox=(format!("0 0 {WIDTH} {height}")) role="img" aria-label=(caption) {
                @for (row, bar) in bars.iter().enumerate() {
                    @let y = ROW * u32::try_from(row).unwrap_or(0) + 4;
                    @let length = (bar.value as f64 / max as f64 * room).max(1.0);
                    text x="0" y=(y + 16) { (shorten(&bar.label, 16)) }
                    rect class=(if bar.alarm { "bar bad" } else { "bar" }) x=(LABEL) y=(y + 3)
                        width=(format!("{length:.1}")) height=(ROW - 8) {}
                    text x=(format!("{:.1}", f64::from(LABEL) + length + 6.0)) y=(y + 16) { (bar.value) }
                }
                @if bars.is_empty() {
                    text x="0" y="20" { "nothing yet" }
                }
            }
            figcaption class="muted" { (caption) }
        }
    }
}

/// A line chart of `(x, y)` points (x ascending), e.g. a telemetry series.
pub fn line(caption: &str, unit: &str, points: &[(f64, f64)]) -> Markup {
    let (w, h, pad) = (520.0_f64, 160.0_f64, 30.0_f64);
    let Some(((x0, _), (x1, _))) = points.first().zip(points.last()) else {
        return html! { p class="muted" { (caption) ": no data yet" } };
    };
    let (lo, hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, y)| {
            (lo.min(*y), hi.max(*y))
        });
    let span_x = (x1 - x0).max(1.0);
    let span_y = (hi - lo).max(1e-9);
    let path: Vec<String> = points
        .iter()
        .map(|(x, y)| {
            let px = pad + (x - x0) / span_x * (w - 2.0 * pad);
            let py = h - pad - (y - lo) / span_y * (h - 2.0 * pad);
            format!("{px:.1},{py:.1}")
        })
        .collect();
    html! {
        figure {
            svg class="chart" viewBox=(format!("0 0 {w} {h}")) role="img" aria-label=(caption) {
                line class="axis" x1=(pad) y1=(h - pad) x2=(w - pad) y2=(h - pad) {}
                polyline class="line" points=(path.join(" ")) {}
                text x="0" y="14" { (format!("{hi:.1}")) " " (unit) }
                text x="0" y=(h - 4.0) { (format!("{lo:.1}")) " " (unit) }
            }
            figcaption class="muted" { (caption) }
        }
    }
}

fn shorten(label: &str, max: usize) -> String {
    if label.chars().count() <= max {
        label.to_owned()
    } else {
        let mut short: String = label.chars().take(max.saturating_sub(1)).collect();
        short.push('…');
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_shortened() {
        let chart = bars(
            "versions",
            &[Bar {
                label: "<script>alert(1)</script>".into(),
                value: 3,
                alarm: false,
            }],
        )
        .into_string();
        assert!(!chart.contains("<script>"), "{chart}");
        assert!(chart.contains("&lt;script&gt;"), "{chart}");
        assert_eq!(shorten("abcdef", 4), "abc…");
    }

    #[test]
    fn an_empty_series_says_so() {
        assert!(line("cpu", "%", &[]).into_string().contains("no data yet"));
        assert!(bars("v", &[]).into_string().contains("nothing yet"));
    }
}
