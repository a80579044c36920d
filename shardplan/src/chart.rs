//! SVG line charts: disk and shards per node over the simulated days, and the
//! latency curve of `measure`.
//!
//! Rendered into a `String` with plotters' SVG backend; writing the file is
//! the binary's job. The SVG names the `sans-serif` family; text is laid out
//! with the workspace's compiled-in font (`assets/fonts/`), so layout does not
//! depend on the machine's fonts.

use plotters::prelude::*;

use crate::error::ChartError;
use crate::latency::CurvePoint;
use crate::simulate::Simulation;

/// One named line.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Points `(x, y)`, in x order.
    pub points: Vec<(f64, f64)>,
}

/// A panel: title, axis descriptions, lines and an optional horizontal
/// reference line (e.g. the latency target).
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Caption above the panel.
    pub title: String,
    /// X axis description.
    pub x_label: String,
    /// Y axis description.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// A dashed-looking reference line at this y, with its label.
    pub reference: Option<(f64, String)>,
}

const FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");
static REGISTER_FONT: std::sync::Once = std::sync::Once::new();

/// plotters measures text with ab_glyph, which knows only registered fonts.
fn register_font() {
    REGISTER_FONT.call_once(|| {
        // The compiled-in font is valid; if it were refused, text would be
        // missing from the chart, which the tests check.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT_BYTES);
    });
}

fn chart_error<E: std::fmt::Display>(error: E) -> ChartError {
    ChartError(error.to_string())
}

fn bounds(panel: &Panel) -> ((f64, f64), f64) {
    let mut x_min = f64::INFINITY;
    let mut x_max = f64::NEG_INFINITY;
    let mut y_max = panel.reference.as_ref().map_or(0.0, |(y, _)| *y);
    for series in &panel.series {
        for &(x, y) in &series.points {
            x_min = x_min.min(x);
            x_max = x_max.max(x);
            y_max = y_max.max(y);
        }
    }
    if !x_min.is_finite() {
        (x_min, x_max) = (0.0, 1.0);
    }
    if x_max <= x_min {
        x_max = x_min + 1.0;
    }
    let y_top = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    ((x_min, x_max), y_top)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
) -> Result<(), ChartError>
where
    DB::ErrorType: 'static,
{
    let ((x_min, x_max), y_top) = bounds(panel);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_min..x_max, 0.0..y_top)
        .map_err(chart_error)?;
    chart
        .configure_mesh()
        .x_desc(panel.x_label.as_str())
        .y_desc(panel.y_label.as_str())
        .draw()
        .map_err(chart_error)?;
    for (index, series) in panel.series.iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        chart
            .draw_series(LineSeries::new(
                series.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(chart_error)?
            .label(series.label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    if let Some((y, label)) = &panel.reference {
        let y = *y;
        chart
            .draw_series(LineSeries::new(
                [(x_min, y), (x_max, y)],
                RED.stroke_width(1),
            ))
            .map_err(chart_error)?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(chart_error)?;
    Ok(())
}

/// Renders panels stacked vertically into one SVG document.
pub fn render_svg(panels: &[Panel], width: u32, panel_height: u32) -> Result<String, ChartError> {
    register_font();
    let mut svg = String::new();
    {
        let height = panel_height * u32::try_from(panels.len().max(1)).unwrap_or(1);
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let areas = root.split_evenly((panels.len().max(1), 1));
        for (panel, area) in panels.iter().zip(areas.iter()) {
            draw_panel(area, panel)?;
        }
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}

/// Disk (GB) and shard count per node over the simulated days.
pub fn simulation_panels(simulation: &Simulation) -> Vec<Panel> {
    let gigabyte = f64::from(1_u32 << 30);
    let per_node = |value: &dyn Fn(usize, usize) -> f64| -> Vec<Series> {
        simulation
            .nodes
            .iter()
            .enumerate()
            .map(|(node_index, node)| Series {
                label: node.name.clone(),
                points: simulation
                    .days
                    .iter()
                    .enumerate()
                    .map(|(day_index, day)| (f64::from(day.day), value(day_index, node_index)))
                    .collect(),
            })
            .collect()
    };
    vec![
        Panel {
            title: "disk used per node".to_string(),
            x_label: "day".to_string(),
            y_label: "GB".to_string(),
            series: per_node(&|day, node| {
                simulation.days[day].nodes[node].disk.bytes() as f64 / gigabyte
            }),
            reference: None,
        },
        Panel {
            title: "shard copies per node".to_string(),
            x_label: "day".to_string(),
            y_label: "shards".to_string(),
            series: per_node(&|day, node| simulation.days[day].nodes[node].shards as f64),
            reference: None,
        },
    ]
}

/// Latency percentiles (ms) against shard size (MB), with the target line.
pub fn latency_panels(curve: &[CurvePoint], target_ms: f64) -> Vec<Panel> {
    let megabyte = f64::from(1_u32 << 20);
    let line = |label: &str, pick: fn(&CurvePoint) -> f64| Series {
        label: label.to_string(),
        points: curve
            .iter()
            .map(|point| (point.store_bytes as f64 / megabyte, pick(point)))
            .collect(),
    };
    vec![Panel {
        title: "search latency as the shard grows".to_string(),
        x_label: "shard size (MB)".to_string(),
        y_label: "latency (ms)".to_string(),
        series: vec![
            line("p50", |point| point.p50_ms),
            line("p95", |point| point.p95_ms),
            line("p99", |point| point.p99_ms),
        ],
        reference: Some((target_ms, format!("target {target_ms} ms"))),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labels_into_svg() {
        let panels = vec![Panel {
            title: "demo".to_string(),
            x_label: "day".to_string(),
            y_label: "GB".to_string(),
            series: vec![Series {
                label: "hot-1".to_string(),
                points: vec![(1.0, 2.0), (2.0, 3.0)],
            }],
            reference: Some((2.5, "target".to_string())),
        }];
        let svg = render_svg(&panels, 600, 300).expect("draws");
        assert!(svg.starts_with("<svg"));
        for text in ["demo", "hot-1", "target", "polyline"] {
            assert!(svg.contains(text), "{text} missing");
        }
    }

    #[test]
    fn empty_series_still_draw() {
        let panels = vec![Panel {
            title: "empty".to_string(),
            x_label: "x".to_string(),
            y_label: "y".to_string(),
            series: vec![],
            reference: None,
        }];
        assert!(render_svg(&panels, 400, 200).is_ok());
    }
}
