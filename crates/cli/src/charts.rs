//! `ivr report`'s charts (SVG, drawn with plotters) and its HTML page: calls
//! and service level by hour, the queue-wait distribution, the abandon curve
//! and each flow's funnel.

use std::fmt::Write as _;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::kpis::Report;

const W: u32 = 900;
const H: u32 = 420;
const FONT: &str = "sans-serif";
const BLUE: RGBColor = RGBColor(0x1f, 0x6f, 0xb4);
const GREEN: RGBColor = RGBColor(0x2e, 0x8b, 0x57);
const ORANGE: RGBColor = RGBColor(0xe0, 0x7b, 0x1a);
const RED_: RGBColor = RGBColor(0xc0, 0x39, 0x2b);

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

fn svg(height: u32, draw: impl for<'a, 'b> FnOnce(&'a Area<'b>) -> Result<(), Box<dyn std::error::Error + 'b>>) -> String {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (W, height)).into_drawing_area();
        // Drawing into a string fails only on a bug of ours (a range upside down):
        // the chart is then left as far as it got, never the whole report lost.
        let _ = root.fill(&WHITE).map_err(|e| e.to_string()).and_then(|()| draw(&root).map_err(|e| e.to_string())).and_then(|()| root.present().map_err(|e| e.to_string()));
    }
    out
}

/// IVR calls (bars) and the queues' service level (line) for each hour of the day.
pub fn calls_by_hour(r: &Report) -> String {
    let threshold = r.all_queues.service_level_threshold_ms / 1000;
    svg(H, |root| {
        let top = r.hours.iter().map(|h| h.ivr_calls).max().unwrap_or(0).max(1);
        let mut chart = ChartBuilder::on(root)
            .caption(format!("Calls and service level ({threshold} s) by hour"), (FONT, 22))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .right_y_label_area_size(48)
            .build_cartesian_2d((0u32..23u32).into_segmented(), 0u64..top + top / 10 + 1)?
            .set_secondary_coord(0f64..24f64, 0f64..100f64);
        chart.configure_mesh().disable_x_mesh().x_desc("hour of day").y_desc("IVR calls").x_labels(24).draw()?;
        chart.configure_secondary_axes().y_desc("service level %").draw()?;
        let bars = Histogram::vertical(&chart).style(BLUE.mix(0.75).filled()).margin(3).data(r.hours.iter().map(|h| (u32::from(h.hour), h.ivr_calls)));
        chart.draw_series(bars)?.label("IVR calls").legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], BLUE.filled()));
        // The service level where there is one (answered or abandoned calls),
        // joined only from one hour to the next: a gap is no calls, not a trend.
        let sl: Vec<(f64, f64)> = r.hours.iter().filter(|h| h.decided > 0).map(|h| (f64::from(h.hour) + 0.5, h.service_level)).collect();
        let joined: Vec<PathElement<(f64, f64)>> = sl.windows(2).filter(|w| w[1].0 - w[0].0 < 1.5).map(|w| PathElement::new(vec![w[0], w[1]], ORANGE.stroke_width(3))).collect();
        chart.draw_secondary_series(joined)?;
        chart.draw_secondary_series(sl.into_iter().map(|p| Circle::new(p, 4, ORANGE.filled())))?.label("service level %").legend(|(x, y)| PathElement::new([(x, y), (x + 12, y)], ORANGE.stroke_width(3)));
        chart.configure_series_labels().background_style(WHITE.mix(0.9)).border_style(BLACK.mix(0.3)).position(SeriesLabelPosition::UpperRight).draw()?;
        Ok(())
    })
}

fn band_label(up_to_s: Option<u64>, before: u64) -> String {
    match up_to_s {
        Some(s) => format!("{before}–{s}s"),
        None => format!(">{before}s"),
    }
}

/// Queued callers by how long they waited: answered and abandoned side by side.
pub fn wait_distribution(r: &Report) -> String {
    svg(H, |root| {
        let labels: Vec<String> = r.waits.iter().scan(0, |before, b| {
            let l = band_label(b.up_to_s, *before);
            *before = b.up_to_s.unwrap_or(*before);
            Some(l)
        }).collect();
        let n = r.waits.len() as u32;
        let top = r.waits.iter().map(|b| b.answered.max(b.abandoned)).max().unwrap_or(0).max(1);
        let mut chart = ChartBuilder::on(root)
            .caption("Queue wait distribution", (FONT, 22))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d((0u32..n.saturating_sub(1)).into_segmented(), 0u64..top + top / 10 + 1)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("waited")
            .y_desc("callers")
            .x_labels(n as usize)
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .draw()?;
        // Two bars in each band: answered on the left half, abandoned on the right.
        let bar = |i: u32, left: bool, v: u64, c: RGBColor| {
            let (a, b) = if left { (SegmentValue::Exact(i), SegmentValue::CenterOf(i)) } else { (SegmentValue::CenterOf(i), SegmentValue::Exact(i + 1)) };
            let mut r = Rectangle::new([(a, 0), (b, v)], c.filled());
            r.set_margin(0, 0, if left { 6 } else { 1 }, if left { 1 } else { 6 });
            r
        };
        chart.draw_series(r.waits.iter().zip(0..).map(|(b, i)| bar(i, true, b.answered, GREEN)))?.label("answered").legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], GREEN.filled()));
        chart.draw_series(r.waits.iter().zip(0..).map(|(b, i)| bar(i, false, b.abandoned, RED_)))?.label("abandoned").legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], RED_.filled()));
        chart.configure_series_labels().background_style(WHITE.mix(0.9)).border_style(BLACK.mix(0.3)).position(SeriesLabelPosition::UpperRight).draw()?;
        Ok(())
    })
}

/// The abandon curve: of the callers who abandoned, the share gone by each wait.
pub fn abandon_curve(r: &Report) -> String {
    svg(H, |root| {
        let total: u64 = r.waits.iter().map(|b| b.abandoned).sum();
        let last_edge = r.waits.iter().filter_map(|b| b.up_to_s).max().unwrap_or(600);
        let right = last_edge + last_edge / 4;
        let mut points = vec![(0f64, 0f64)];
        let mut gone = 0;
        for b in &r.waits {
            gone += b.abandoned;
            let x = b.up_to_s.unwrap_or(right);
            points.push((x as f64, if total == 0 { 0.0 } else { gone as f64 * 100.0 / total as f64 }));
        }
        let caption = if total == 0 { "Abandon curve: nobody abandoned".to_string() } else { format!("Abandon curve ({total} abandoned)") };
        let mut chart = ChartBuilder::on(root)
            .caption(caption, (FONT, 22))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(0f64..right as f64, 0f64..100f64)?;
        chart.configure_mesh().x_desc("seconds waited").y_desc("% of abandons by then").draw()?;
        if total > 0 {
            chart.draw_series(LineSeries::new(points.clone(), RED_.stroke_width(3)))?;
            chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, RED_.filled())))?;
        }
        Ok(())
    })
}

/// A flow's funnel: calls reaching each node (the busiest first), and of them
/// the callers who hung up there.
pub fn funnel(r: &Report, flow: &str) -> String {
    let Some(f) = r.funnel.get(flow) else { return String::new() };
    let nodes: Vec<_> = f.nodes.iter().take(15).collect();
    let height = 90 + 28 * nodes.len().max(6) as u32;
    svg(height, |root| {
        let top = nodes.iter().map(|n| n.reached).max().unwrap_or(0).max(1);
        // Long names shortened to fit the label column.
        let names: Vec<String> = nodes.iter().map(|n| if n.node.chars().count() > 26 { format!("{}…", n.node.chars().take(25).collect::<String>()) } else { n.node.clone() }).collect();
        let rows = names.len().max(1) as u32;
        let mut chart = ChartBuilder::on(root)
            .caption(format!("Funnel of {flow}: {} calls, {} contained", f.calls, f.contained), (FONT, 22))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(170)
            .build_cartesian_2d(0u64..top + top / 10 + 1, (0u32..rows).into_segmented())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc("calls")
            .y_labels(rows as usize)
            .y_label_formatter(&|y| match y {
                SegmentValue::CenterOf(i) => rows.checked_sub(1 + *i).and_then(|r| names.get(r as usize)).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .draw()?;
        // The busiest node on top.
        let row = |i: usize| rows - 1 - i as u32;
        chart.draw_series(Histogram::horizontal(&chart).style(BLUE.mix(0.75).filled()).margin(4).data(nodes.iter().enumerate().map(|(i, n)| (row(i), n.reached))))?.label("reached").legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], BLUE.filled()));
        chart.draw_series(Histogram::horizontal(&chart).style(RED_.mix(0.85).filled()).margin(8).data(nodes.iter().enumerate().map(|(i, n)| (row(i), n.hung_up))))?.label("hung up here").legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], RED_.filled()));
        chart.configure_series_labels().background_style(WHITE.mix(0.9)).border_style(BLACK.mix(0.3)).position(SeriesLabelPosition::LowerRight).draw()?;
        Ok(())
    })
}

/// Every chart of the report: (file name, SVG).
pub fn all(r: &Report) -> Vec<(String, String)> {
    let mut charts = vec![
        ("calls_by_hour.svg".to_string(), calls_by_hour(r)),
        ("queue_waits.svg".to_string(), wait_distribution(r)),
        ("abandon_curve.svg".to_string(), abandon_curve(r)),
    ];
    for flow in r.funnel.keys() {
        let safe: String = flow.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
        // Names that are not plain ASCII get a hash, so two never share a file.
        let name = if safe == *flow {
            format!("funnel_{safe}.svg")
        } else {
            let h = flow.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
            format!("funnel_{safe}_{:08x}.svg", h as u32)
        };
        charts.push((name, funnel(r, flow)));
    }
    charts
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The report as one self-contained HTML page (tables and inline charts), for
/// a browser or a mail.
pub fn html(r: &Report) -> String {
    let mut o = String::new();
    let k = &r.all_queues;
    let sl_s = k.service_level_threshold_ms / 1000;
    let _ = write!(
        o,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>ivr report {from} to {to}</title>\n<style>\
body{{font-family:system-ui,'Noto Sans CJK SC',sans-serif;margin:2em;color:#222;max-width:1000px}}\
table{{border-collapse:collapse;margin:.5em 0 1.5em}}th,td{{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:right}}\
th:first-child,td:first-child{{text-align:left}}th{{background:#f3f5f8}}.tiles{{display:flex;flex-wrap:wrap;gap:1em}}\
.tile{{border:1px solid #ccd;border-radius:6px;padding:.6em 1em;min-width:9em}}.tile b{{display:block;font-size:1.6em}}\
figure{{margin:1em 0}}</style></head><body>\n<h1>Report {from} to {to}</h1>\n",
        from = esc(&r.from),
        to = esc(&r.to)
    );
    let rate = |x: f64, over: u64| if over == 0 { "–".to_string() } else { format!("{x:.1}%") };
    let secs_over = |ms: u64, over: u64| if over == 0 { "–".to_string() } else { format!("{:.1} s", ms as f64 / 1000.0) };
    let tile = |o: &mut String, label: &str, value: String| {
        let _ = write!(o, "<div class=\"tile\">{}<b>{}</b></div>", esc(label), esc(&value));
    };
    o.push_str("<div class=\"tiles\">");
    tile(&mut o, "IVR calls", r.ivr.calls.to_string());
    tile(&mut o, "Contained 自助完成", rate(r.ivr.containment, r.ivr.calls));
    tile(&mut o, "Offered to agents", k.offered.to_string());
    tile(&mut o, "Answer rate 接通率", rate(k.answer_rate, k.offered));
    tile(&mut o, &format!("Service level ({sl_s} s) 服务水平"), rate(k.service_level, k.answered + k.abandoned));
    tile(&mut o, "Abandon rate 放弃率", rate(k.abandon_rate, k.offered));
    tile(&mut o, "ASA", secs_over(k.asa_ms, k.answered));
    tile(&mut o, "AHT", secs_over(k.aht_ms, k.answered));
    tile(&mut o, "Queued 排队率", rate(k.queue_rate, k.offered));
    tile(&mut o, "Average waiting 排队均长", format!("{:.2}", r.average_waiting));
    tile(&mut o, "First-contact resolution 一次解决率", rate(r.first_contact.rate, r.first_contact.identified));
    tile(&mut o, "Satisfied 满意度", rate(r.survey.satisfied, r.survey.answers));
    o.push_str("</div>\n");
    let table = |o: &mut String, head: &[&str], rows: Vec<Vec<String>>| {
        o.push_str("<table><tr>");
        for h in head {
            let _ = write!(o, "<th>{}</th>", esc(h));
        }
        o.push_str("</tr>\n");
        for row in rows {
            o.push_str("<tr>");
            for c in row {
                let _ = write!(o, "<td>{}</td>", esc(&c));
            }
            o.push_str("</tr>\n");
        }
        o.push_str("</table>\n");
    };
    o.push_str("<h2>Queues</h2>\n");
    let queue_rows = r.queues.iter().map(|(q, k)| (q.as_str(), k)).chain([("(all)", k)]).map(|(q, k)| vec![q.to_string(), k.offered.to_string(), k.answered.to_string(), k.abandoned.to_string(), k.overflowed.to_string(), rate(k.service_level, k.answered + k.abandoned), secs_over(k.asa_ms, k.answered), rate(k.abandon_rate, k.offered), secs_over(k.aht_ms, k.answered), secs_over(k.longest_wait_ms, k.offered)]).collect();
    table(&mut o, &["queue", "offered", "answered", "abandoned", "sent on", &format!("SL {sl_s}s"), "ASA", "abandon", "AHT", "longest wait"], queue_rows);
    let _ = write!(o, "<h2>By {}</h2>\n", esc(&r.by));
    let period_rows = r
        .periods
        .iter()
        .map(|p| {
            let q = &p.all_queues;
            vec![p.period.clone(), p.ivr_calls.to_string(), rate(p.containment, p.ivr_calls), q.offered.to_string(), q.answered.to_string(), q.abandoned.to_string(), rate(q.service_level, q.answered + q.abandoned), secs_over(q.asa_ms, q.answered), rate(q.abandon_rate, q.offered)]
        })
        .collect();
    table(&mut o, &[&r.by, "IVR calls", "contained", "offered", "answered", "abandoned", &format!("SL {sl_s}s"), "ASA", "abandon"], period_rows);
    o.push_str("<h2>Charts</h2>\n");
    for (name, chart) in all(r) {
        let _ = write!(o, "<figure id=\"{}\">{}</figure>\n", esc(name.trim_end_matches(".svg")), chart);
    }
    for (flow, f) in &r.funnel {
        let _ = write!(o, "<h2>Funnel: {} ({} calls, {} contained)</h2>\n", esc(flow), f.calls, f.contained);
        let rows = f.nodes.iter().map(|n| vec![n.node.clone(), n.reached.to_string(), n.hung_up.to_string(), n.keys.iter().map(|(k, c)| format!("{k}:{c}")).collect::<Vec<_>>().join(" ")]).collect();
        table(&mut o, &["node", "reached", "hung up here", "keys pressed"], rows);
    }
    o.push_str("<h2>Agents</h2>\n");
    let agent_rows = r
        .agents
        .iter()
        .map(|a| {
            let on: u64 = a.states_s.iter().filter(|(k, _)| *k != "logged_out").map(|(_, v)| *v).sum();
            vec![a.agent.clone(), a.calls.to_string(), a.talk_s.to_string(), a.wrap_up_s.to_string(), rate(a.utilisation, on)]
        })
        .collect();
    table(&mut o, &["agent", "calls", "talk s", "wrap-up s", "utilisation"], agent_rows);
    o.push_str("<h2>Menu hits 点击率排名</h2>\n");
    let hit_rows = r.ivr.menu_hits.iter().take(20).map(|(n, c)| vec![n.clone(), c.to_string()]).collect();
    table(&mut o, &["node", "calls reaching it"], hit_rows);
    o.push_str("</body></html>\n");
    o
}
