//! The slow-log chart: a PNG with the top fingerprints by total time and the
//! latency distribution of all reported entries.
//!
//! Pure: report in, PNG bytes out; the font is compiled in (DejaVu Sans Mono,
//! `assets/fonts/` at the workspace root) so charts render the same on every machine, with no system font
//! lookup.

use super::digest::{DigestReport, GroupBy};
use crate::format::humanize_ms;
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::sync::Once;

/// The chart could not be drawn or encoded.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// Drawing failed.
    #[error("failed to draw chart: {0}")]
    Draw(String),
    /// PNG encoding failed.
    #[error("failed to encode chart as png")]
    Encode(#[from] image::ImageError),
}

const FONT_BYTES: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSansMono.ttf");
const FONT_NAME: &str = "sans-serif";
static REGISTER_FONT: Once = Once::new();

fn register_font() {
    REGISTER_FONT.call_once(|| {
        // The compiled-in font is valid; a failure would only mean text is
        // not drawn, which the tests would show.
        if plotters::style::register_font(FONT_NAME, FontStyle::Normal, FONT_BYTES).is_err() {
            tracing::warn!("compiled-in chart font was rejected");
        }
    });
}

fn draw_error<E: std::fmt::Display>(error: E) -> ChartError {
    ChartError::Draw(error.to_string())
}

/// Width and height of the chart in pixels.
pub const CHART_SIZE: (u32, u32) = (1000, 700);

/// Draws the chart for up to `top` fingerprints and returns PNG bytes.
pub fn render_png(report: &DigestReport, top: usize) -> Result<Vec<u8>, ChartError> {
    register_font();
    let (width, height) = CHART_SIZE;
    let mut pixels = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let (upper, lower) = root.split_vertically(height * 55 / 100);
        draw_top(&upper, report, top)?;
        draw_distribution(&lower, report)?;
        root.present().map_err(draw_error)?;
    }
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        &pixels,
        width,
        height,
        image::ColorType::Rgb8,
    )?;
    Ok(png)
}

fn draw_top<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    report: &DigestReport,
    top: usize,
) -> Result<(), ChartError>
where
    DB::ErrorType: 'static,
{
    let bars: Vec<(String, u64)> = report
        .top
        .iter()
        .take(top.max(1))
        .enumerate()
        .map(|(rank, stats)| {
            let shape: String = stats.fingerprint.chars().take(34).collect();
            (
                format!("#{} {} {}", rank + 1, stats.kind.as_str(), shape),
                stats.total_ms,
            )
        })
        .collect();
    let count = bars.len().max(1);
    let max_total = bars
        .iter()
        .map(|(_, total)| *total)
        .max()
        .unwrap_or(0)
        .max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(
            match report.by {
                GroupBy::Request => format!(
                    "top fingerprints by total request time ({} requests)",
                    report.requests
                ),
                GroupBy::Shard => format!(
                    "top fingerprints by total shard time ({} shard executions)",
                    report.reported
                ),
            },
            (FONT_NAME, 20),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(380)
        .build_cartesian_2d(
            0u64..max_total + max_total / 10 + 1,
            (0..count).into_segmented(),
        )
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .label_style((FONT_NAME, 13))
        .x_desc("total ms")
        .y_labels(count)
        .y_label_formatter(&|position| match position {
            // Rank 1 at the top: position 0 is the bottom row.
            SegmentValue::CenterOf(position) => count
                .checked_sub(position + 1)
                .and_then(|index| bars.get(index))
                .map(|(label, _)| label.clone())
                .unwrap_or_default(),
            _ => String::new(),
        })
        .draw()
        .map_err(draw_error)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(index, (_, total))| {
            let position = count - 1 - index;
            let mut bar = Rectangle::new(
                [
                    (0, SegmentValue::Exact(position)),
                    (*total, SegmentValue::Exact(position + 1)),
                ],
                BLUE.mix(0.6).filled(),
            );
            bar.set_margin(4, 4, 0, 0);
            bar
        }))
        .map_err(draw_error)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(index, (_, total))| {
            Text::new(
                humanize_ms(*total),
                (*total, SegmentValue::CenterOf(count - 1 - index)),
                (FONT_NAME, 12).into_font(),
            )
        }))
        .map_err(draw_error)?;
    Ok(())
}

fn draw_distribution<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    report: &DigestReport,
) -> Result<(), ChartError>
where
    DB::ErrorType: 'static,
{
    let labels: Vec<String> = report
        .latency_buckets
        .iter()
        .map(|bucket| match bucket.below_ms {
            Some(ms) => format!("<{}", humanize_ms(ms)),
            None => "more".to_string(),
        })
        .collect();
    let counts: Vec<u64> = report
        .latency_buckets
        .iter()
        .map(|bucket| bucket.count)
        .collect();
    let max_count = counts.iter().copied().max().unwrap_or(0).max(1);
    let buckets = counts.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption("latency distribution", (FONT_NAME, 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (0..buckets).into_segmented(),
            0u64..max_count + max_count / 10 + 1,
        )
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .label_style((FONT_NAME, 13))
        .y_desc(match report.by {
            GroupBy::Request => "requests",
            GroupBy::Shard => "shard executions",
        })
        .x_labels(buckets)
        .x_label_formatter(&|position| match position {
            SegmentValue::CenterOf(index) => labels.get(*index).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()
        .map_err(draw_error)?;
    chart
        .draw_series(counts.iter().enumerate().map(|(index, count)| {
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(index), 0),
                    (SegmentValue::Exact(index + 1), *count),
                ],
                RED.mix(0.5).filled(),
            );
            bar.set_margin(0, 0, 6, 6);
            bar
        }))
        .map_err(draw_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slowlog::digest::{Digest, DigestFilter};
    use crate::slowlog::parse::{SlowEntry, SlowLogKind};

    #[test]
    fn renders_a_png_with_content() {
        let mut digest = Digest::new(DigestFilter::default());
        for took in [50, 120, 300, 700, 1_500, 4_000, 12_000] {
            digest.add_entry(SlowEntry {
                timestamp: None,
                kind: SlowLogKind::Query,
                index: "logs".into(),
                shard: Some(1),
                node: None,
                took_ms: took,
                total_hits: None,
                source: format!(r#"{{"size":{took},"query":{{"match_all":{{}}}}}}"#),
                id: None,
            });
        }
        let report = digest.finish(10);
        let png = render_png(&report, 10).expect("chart");
        assert!(png.starts_with(&[0x89, b'P', b'N', b'G']));
        let decoded = image::load_from_memory(&png).expect("decodes").to_rgb8();
        assert_eq!(decoded.dimensions(), CHART_SIZE);
        let non_white = decoded.pixels().filter(|p| p.0 != [255, 255, 255]).count();
        assert!(non_white > 5_000, "chart has content: {non_white} pixels");
        // An empty report still draws (axes, captions) without failing.
        let empty = Digest::new(DigestFilter::default()).finish(10);
        assert!(render_png(&empty, 10).is_ok());
    }
}
