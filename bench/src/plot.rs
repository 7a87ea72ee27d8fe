//! The fleet figure (`docs/img/fleet-rate.svg`): accepted and throttled
//! DetectLabels calls per second over time, one panel per fleet run, with
//! the limit as a line. SVG only, so no font files are needed: text is left
//! to the viewer.

use crate::scenario_fleet::FleetRun;
use plotters::prelude::*;

/// Picks accepted or throttled calls out of a second's (accepted, throttled).
type Pick = fn((u32, u32)) -> u32;

/// The figure of `runs` as an SVG document.
pub fn fleet_rates(runs: &[FleetRun]) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let height = 240 * runs.len().max(1) as u32;
        let root = SVGBackend::with_string(&mut svg, (900, height)).into_drawing_area();
        root.fill(&WHITE)?;
        for (run, area) in runs.iter().zip(root.split_evenly((runs.len().max(1), 1))) {
            let seconds = run.per_second.len().max(1) as f64;
            let highest = run.per_second.iter().map(|&(a, t)| a.max(t)).max();
            let top = f64::from(highest.unwrap_or(0)).max(run.limit_per_s) * 1.15;
            let mut chart = ChartBuilder::on(&area)
                .caption(run.label(), ("sans-serif", 16))
                .margin(8)
                .x_label_area_size(32)
                .y_label_area_size(48)
                .build_cartesian_2d(0.0..seconds, 0.0..top)?;
            chart
                .configure_mesh()
                .x_desc("seconds")
                .y_desc("DetectLabels calls/s")
                .light_line_style(WHITE)
                .draw()?;
            let lines: [(&str, RGBColor, Pick); 2] = [
                ("accepted", BLUE, |(accepted, _)| accepted),
                ("throttled", RED, |(_, throttled)| throttled),
            ];
            for (name, color, pick) in lines {
                let points = run
                    .per_second
                    .iter()
                    .enumerate()
                    .map(|(i, &calls)| (i as f64 + 0.5, f64::from(pick(calls))));
                chart
                    .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                    .label(name)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
            }
            let limit = run.limit_per_s;
            chart
                .draw_series(LineSeries::new([(0.0, limit), (seconds, limit)], BLACK))?
                .label(format!("limit {limit:.0}/s"))
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK));
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
        root.present()?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_figure_has_a_panel_per_run_with_its_limit() {
        let runs = [FleetRun::example(), FleetRun::example()];

        let svg = fleet_rates(&runs).unwrap();

        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert_eq!(svg.matches("limit 50/s").count(), 2);
        assert_eq!(svg.matches("throttled").count(), 2);
    }
}
