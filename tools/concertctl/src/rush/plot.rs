//! The report's picture: the line, admissions and payments, and p99 latency, over time.
use std::path::Path;

use plotters::prelude::*;

use super::RushReport;

/// A series of (second, value) points with its legend and colour.
type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

/// Draws three stacked charts sharing the time axis into an SVG file.
///
/// # Errors
/// When the file cannot be written, or the path does not end in `.svg`.
pub fn draw(report: &RushReport, path: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        path.extension().is_some_and(|e| e.eq_ignore_ascii_case("svg")),
        "--plot {}: only SVG is drawn (PNG text would need system fonts); name the file *.svg",
        path.display()
    );
    let t = &report.timeline;
    let points = |f: &dyn Fn(&super::report::SecondRow) -> Option<f64>| -> Vec<(f64, f64)> {
        t.iter().filter_map(|s| f(s).map(|v| (s.t as f64, v))).collect()
    };
    let line = points(&|s| s.waiting.map(|w| w as f64));
    let active = points(&|s| s.active.map(|a| a as f64));
    let admitted = points(&|s| Some(s.admitted as f64));
    let paid = points(&|s| Some(s.paid as f64));
    let p99 = points(&|s| (s.calls > 0).then_some(s.p99_ms));
    let errors = points(&|s| Some(s.errors as f64));

    let root = SVGBackend::new(path, (1000, 960)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let title = format!(
        "rush: {} people, {} seats{}",
        report.users,
        report.seats,
        report.sold_out_after_s.map_or(" (not sold out)".into(), |s| format!(", sold out after {s:.1} s"))
    );
    let (top, rest) = root.split_vertically(40);
    top.titled(&title, ("sans-serif", 22)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let areas = rest.split_evenly((3, 1));
    let x_max = (t.len().max(2) - 1) as f64;
    chart(
        &areas[0],
        "people (as the queue reports them)",
        x_max,
        &[("in line", BLUE, line), ("admitted", GREEN, active)],
    )?;
    chart(
        &areas[1],
        "per second",
        x_max,
        &[("admissions", GREEN, admitted), ("payments", MAGENTA, paid), ("errors", RED, errors)],
    )?;
    chart(&areas[2], "p99 latency of every call, ms", x_max, &[("p99", BLACK, p99)])?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

fn chart(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    title: &str,
    x_max: f64,
    series: &[Series],
) -> anyhow::Result<()> {
    let y_max = series.iter().flat_map(|(_, _, p)| p.iter().map(|(_, y)| *y)).fold(1.0, f64::max) * 1.1;
    let mut c = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    c.configure_mesh().x_desc("seconds since the first arrival").draw().map_err(|e| anyhow::anyhow!("{e}"))?;
    for (name, colour, points) in series {
        let colour = *colour;
        c.draw_series(LineSeries::new(points.iter().copied(), colour.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
