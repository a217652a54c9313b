//! The report's picture: the line, admissions and payments, and p99 latency, over time, as
//! SVG or PNG (chosen by the file's extension).
//!
//! Text is laid out (both formats) and drawn (PNG) with `ab_glyph` from a sans-serif font
//! found among the system's fonts by `fontdb` (Debian: `fonts-dejavu-core`).
use std::{path::Path, sync::OnceLock};

use plotters::{coord::Shift, prelude::*};

use super::RushReport;

/// A series of (second, value) points with its legend and colour.
type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

/// Size of the picture, in pixels.
const SIZE: (u32, u32) = (1000, 960);

/// Draws three stacked charts sharing the time axis into an SVG or PNG file.
///
/// # Errors
/// When the file cannot be written, its name ends in neither `.svg` nor `.png`, or no font
/// is installed.
pub fn draw(report: &RushReport, path: &Path) -> anyhow::Result<()> {
    let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let svg = match extension.as_deref() {
        Some("svg") => true,
        Some("png") => false,
        _ => anyhow::bail!("--plot {}: name the file *.svg or *.png", path.display()),
    };
    register_system_font()?;
    if svg {
        draw_on(report, &SVGBackend::new(path, SIZE).into_drawing_area())
    } else {
        draw_on(report, &BitMapBackend::new(path, SIZE).into_drawing_area())
    }
}

/// Makes a system sans-serif font plotters' "sans-serif" (once per process).
fn register_system_font() -> anyhow::Result<()> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let mut fonts = fontdb::Database::new();
        fonts.load_system_fonts();
        // fontdb maps the generic family to "Arial"; name the common free sans fonts first.
        let families = [
            fontdb::Family::Name("DejaVu Sans"),
            fontdb::Family::Name("Liberation Sans"),
            fontdb::Family::Name("Noto Sans"),
            fontdb::Family::SansSerif,
        ];
        let query = fontdb::Query { families: &families, ..fontdb::Query::default() };
        let face = fonts.query(&query).or_else(|| fonts.faces().next().map(|f| f.id)).ok_or_else(|| {
            "--plot: no font installed for the text (Debian: apt-get install fonts-dejavu-core)".to_owned()
        })?;
        let data = fonts.with_face_data(face, |data, _| data.to_vec()).ok_or("the font file could not be read")?;
        // plotters keeps registered fonts for the life of the process.
        let data: &'static [u8] = Box::leak(data.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, data)
            .map_err(|_| "the system font could not be parsed".to_owned())
    })
    .clone()
    .map_err(|e| anyhow::anyhow!(e))
}

fn draw_on<DB: DrawingBackend>(report: &RushReport, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let t = &report.timeline;
    let points = |f: &dyn Fn(&super::report::SecondRow) -> Option<f64>| -> Vec<(f64, f64)> {
        t.iter().filter_map(|s| f(s).map(|v| (s.t as f64, v))).collect()
    };
    let line = points(&|s| s.waiting.map(|w| w as f64));
    let active = points(&|s| s.active.map(|a| a as f64));
    let admitted = points(&|s| Some(s.admitted as f64));
    let paid = points(&|s| Some(s.paid as f64));
    let p99 = points(&|s| (s.calls > 0).then_some(s.p99_ms));
    let admitted_p99 = points(&|s| (s.admitted_p99_ms > 0.0).then_some(s.admitted_p99_ms));
    let errors = points(&|s| Some(s.errors as f64));

    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let title = format!(
        "rush: {} people, {} seats{}",
        report.users,
        report.seats,
        report.sold_out_after_s.map_or(" (not sold out)".into(), |s| format!(", sold out after {s:.1} s"))
    );
    let (top, rest) = root.split_vertically(40);
    top.titled(&title, ("sans-serif", 22)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let areas = rest.split_evenly((4, 1));
    let x_max = (t.len().max(2) - 1) as f64;
    chart(
        &areas[0],
        "people (as the queue reports them)",
        x_max,
        &[("in line", BLUE, line), ("admitted", GREEN, active)],
    )?;
    // Admissions and payments on an axis of their own: a flood's error count would flatten them.
    chart(
        &areas[1],
        "admissions and payments per second",
        x_max,
        &[("admissions", GREEN, admitted), ("payments", MAGENTA, paid)],
    )?;
    chart(&areas[2], "refused or failed calls per second", x_max, &[("errors", RED, errors)])?;
    chart(
        &areas[3],
        "p99 latency, ms",
        x_max,
        &[("every call", BLACK, p99), ("admitted people's calls", MAGENTA, admitted_p99)],
    )?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

fn chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    x_max: f64,
    series: &[Series],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::rush::report::SecondRow;

    fn report() -> RushReport {
        RushReport {
            users: 500,
            seats: 100,
            arrival_rate: 1_000.0,
            abandon: 0.1,
            max_active: 40,
            seed: 1,
            elapsed_s: 3.0,
            sold_out_after_s: Some(2.5),
            sold_50_s: Some(1),
            sold_95_s: Some(2),
            sold_100_s: Some(3),
            seats_sold: 100,
            outcomes: std::collections::BTreeMap::new(),
            rpcs: Vec::new(),
            admitted: std::collections::BTreeMap::new(),
            generator_cpu_share: 0.2,
            generator_cpu_us_per_person: 300.0,
            waiting_by: "WatchQueue",
            queue_rss_first_mb: Some(40.0),
            queue_rss_peak_mb: Some(60.0),
            queue_kb_per_waiting: Some(51.2),
            timeline: (0..4)
                .map(|t| SecondRow {
                    t,
                    waiting: Some(400 - 100 * t),
                    active: Some(40),
                    admitted: 30,
                    paid: 25,
                    calls: 900,
                    errors: t,
                    p99_ms: 12.5 * t as f64,
                    admitted_p99_ms: 5.0 * t as f64,
                    queue_rss_mb: Some(40.0 + t as f64),
                })
                .collect(),
            checks: Vec::new(),
            violations: Vec::new(),
        }
    }

    fn temp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("{}-{name}", uuid::Uuid::new_v4()))
    }

    #[test]
    fn draws_svg_and_png_by_extension_and_refuses_other_names() {
        let svg = temp("rush.svg");
        draw(&report(), &svg).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.contains("rush: 500 people, 100 seats, sold out after 2.5 s"), "the title is in the SVG");

        // PNG: text needs a system font (fonts-dejavu-core here and in CI).
        let png = temp("rush.PNG");
        draw(&report(), &png).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let dim = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
        assert_eq!((dim(16), dim(20)), SIZE, "IHDR width and height");

        let refused = draw(&report(), &temp("rush.jpg")).unwrap_err().to_string();
        assert!(refused.contains("--plot") && refused.contains("*.png"), "{refused}");
        let _ = (std::fs::remove_file(svg), std::fs::remove_file(png));
    }
}
