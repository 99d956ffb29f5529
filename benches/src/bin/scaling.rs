//! The scaling report: every benchmark case at 1, 2, 4, ... N threads, interleaved round by
//! round so that drift of the host hits every implementation alike, printed as Markdown tables of
//! ns/op and ratios, with an SVG chart of throughput against threads per operation.
//!
//! ```text
//! cargo run --release -p resile-benches --bin scaling -- --max-threads 4 --svg benches/results
//! ```
//!
//! Options: `--max-threads N` (powers of two up to N, and N itself), `--threads 1,2,8` (an explicit
//! list), `--ms M` (target milliseconds per run, default 100), `--rounds R` (default 5),
//! `--filter TEXT` (only operations whose name contains TEXT), `--svg DIR` (write one chart per
//! operation). The binary needs nothing installed: build it with
//! `RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -p resile-benches --bin scaling
//! --target x86_64-unknown-linux-gnu` and copy it to any x86-64 Linux machine.

use plotters::prelude::*;
use resile_benches::{Case, Pool, Role, all_cases};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

struct Options {
    threads: Vec<usize>,
    ms: u64,
    rounds: usize,
    filter: Option<String>,
    svg: Option<String>,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        threads: vec![1, 2, 4],
        ms: 100,
        rounds: 5,
        filter: None,
        svg: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--max-threads" => {
                let n: usize = val()?.parse().map_err(|e| format!("--max-threads: {e}"))?;
                if n == 0 {
                    return Err("--max-threads must be at least 1".into());
                }
                let mut t: Vec<usize> = (0..usize::BITS)
                    .map(|i| 1usize << i)
                    .take_while(|&p| p <= n)
                    .collect();
                if t.last() != Some(&n) {
                    t.push(n);
                }
                o.threads = t;
            }
            "--threads" => {
                o.threads = val()?
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse::<usize>()
                            .map_err(|e| format!("--threads: {e}"))
                    })
                    .collect::<Result<_, _>>()?;
                if o.threads.contains(&0) || o.threads.is_empty() {
                    return Err("--threads: each count must be at least 1".into());
                }
            }
            "--ms" => o.ms = val()?.parse().map_err(|e| format!("--ms: {e}"))?,
            "--rounds" => o.rounds = val()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--filter" => o.filter = Some(val()?),
            "--svg" => o.svg = Some(val()?),
            "-h" | "--help" => {
                println!(
                    "usage: scaling [--max-threads N | --threads 1,2,4] [--ms 100] [--rounds 5] \
                     [--filter TEXT] [--svg DIR]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.rounds == 0 || o.ms == 0 {
        return Err("--rounds and --ms must be at least 1".into());
    }
    Ok(o)
}

/// Operations per thread so that one run lasts about `ms`.
fn calibrate(pool: &Pool, case: &Case, threads: usize, ms: u64) -> u64 {
    let target = Duration::from_millis(ms);
    let mut iters = 256u64;
    loop {
        let t = (case.run)(pool, threads, iters);
        if t >= target / 8 || iters >= 1 << 34 {
            let scale = target.as_secs_f64() / t.as_secs_f64().max(1e-9);
            return ((iters as f64 * scale) as u64).max(1);
        }
        iters *= 4;
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn role_label(r: Role) -> &'static str {
    match r {
        Role::Resile => "resile",
        Role::StdMutex => "std Mutex",
        Role::ParkingLot => "parking_lot Mutex",
        Role::StdRwLock => "std RwLock",
        Role::ParkingLotRwLock => "parking_lot RwLock",
        Role::Peer => "peer",
        Role::Floor => "floor",
    }
}

fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("scaling: {e}");
            std::process::exit(2);
        }
    };
    let cases: Vec<Case> = all_cases()
        .into_iter()
        .filter(|c| {
            o.filter
                .as_ref()
                .is_none_or(|f| c.group.contains(f.as_str()))
        })
        .collect();
    let max_t = *o.threads.iter().max().unwrap_or(&1);
    let pool = Pool::new(max_t);
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());

    // Calibrate every (case, threads) first, then run the rounds over all of them, alternating
    // direction, so slow drift of the host hits every implementation alike.
    let mut plan: Vec<(usize, usize, u64)> = Vec::new();
    for (ci, c) in cases.iter().enumerate() {
        for &t in &o.threads {
            plan.push((ci, t, calibrate(&pool, c, t, o.ms)));
        }
    }
    let mut samples: BTreeMap<(usize, usize), Vec<f64>> = BTreeMap::new();
    for round in 0..o.rounds {
        let order: Vec<&(usize, usize, u64)> = if round % 2 == 0 {
            plan.iter().collect()
        } else {
            plan.iter().rev().collect()
        };
        for &&(ci, t, iters) in &order {
            let wall = (cases[ci].run)(&pool, t, iters);
            // Aggregate cost: wall time over all operations of all threads.
            let ns = wall.as_nanos() as f64 / (iters as f64 * t as f64);
            samples.entry((ci, t)).or_default().push(ns);
        }
        eprintln!("round {}/{} done", round + 1, o.rounds);
    }
    let med: BTreeMap<(usize, usize), f64> = samples
        .into_iter()
        .map(|(k, mut v)| (k, median(&mut v)))
        .collect();

    let mut out = String::new();
    let _ = writeln!(
        out,
        "scaling: {cpus} CPUs available, threads {:?}, {} interleaved rounds of ~{} ms; \
         median aggregate ns/op (wall time / all operations of all threads; lower is better)\n",
        o.threads, o.rounds, o.ms
    );
    let mut groups: Vec<&'static str> = cases.iter().map(|c| c.group).collect();
    groups.dedup();
    for g in &groups {
        let rows: Vec<usize> = (0..cases.len()).filter(|&i| cases[i].group == *g).collect();
        let _ = writeln!(out, "### {g}\n");
        let mut head = String::from("| implementation | role |");
        let mut rule = String::from("|---|---|");
        for t in &o.threads {
            let _ = write!(head, " {t}t ns/op |");
            rule.push_str("---:|");
        }
        let _ = writeln!(out, "{head}\n{rule}");
        for &i in &rows {
            let _ = write!(out, "| {} | {} |", cases[i].name, role_label(cases[i].role));
            for &t in &o.threads {
                let _ = write!(out, " {:.2} |", med[&(i, t)]);
            }
            let _ = writeln!(out);
        }
        // Ratios: how many times resile's throughput is the best of each other role.
        let resile: Vec<usize> = rows
            .iter()
            .copied()
            .filter(|&i| cases[i].role == Role::Resile)
            .collect();
        for &r in &resile {
            for role in [
                Role::Peer,
                Role::ParkingLot,
                Role::StdMutex,
                Role::ParkingLotRwLock,
                Role::StdRwLock,
            ] {
                let others: Vec<usize> = rows
                    .iter()
                    .copied()
                    .filter(|&i| cases[i].role == role)
                    .collect();
                if others.is_empty() {
                    continue;
                }
                let _ = write!(out, "\n{} vs best {}: ", cases[r].name, role_label(role));
                for &t in &o.threads {
                    let best = others
                        .iter()
                        .map(|&i| med[&(i, t)])
                        .fold(f64::INFINITY, f64::min);
                    let _ = write!(out, "{t}t {:.2}x  ", best / med[&(r, t)]);
                }
            }
        }
        let _ = writeln!(out, "\n");
        if let Some(dir) = &o.svg {
            let series: Vec<(String, Vec<f64>)> = rows
                .iter()
                .map(|&i| {
                    let mops = o.threads.iter().map(|&t| 1e3 / med[&(i, t)]).collect();
                    (cases[i].name.to_string(), mops)
                })
                .collect();
            let file = format!(
                "{dir}/{}.svg",
                g.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
            );
            let written = std::fs::create_dir_all(dir)
                .map_err(Into::into)
                .and_then(|()| chart(&file, g, &o.threads, &series));
            if let Err(e) = written {
                eprintln!("scaling: cannot write {file}: {e}");
            }
        }
    }
    print!("{out}");
}

/// Writes `file`: a line chart of throughput (Mops/s, all threads) against threads, one line per
/// implementation, named in a legend on the right. The y axis is logarithmic when the values span
/// more than 20x, as they do across 16 threads.
fn chart(
    file: &str,
    title: &str,
    threads: &[usize],
    series: &[(String, Vec<f64>)],
) -> Result<(), Box<dyn std::error::Error>> {
    const W: u32 = 800;
    const H: u32 = 440;
    const LEGEND: u32 = 300;
    const COLORS: [RGBColor; 10] = [
        RGBColor(0xd6, 0x27, 0x28),
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0x2c, 0xa0, 0x2c),
        RGBColor(0xff, 0x7f, 0x0e),
        RGBColor(0x94, 0x67, 0xbd),
        RGBColor(0x8c, 0x56, 0x4b),
        RGBColor(0xe3, 0x77, 0xc2),
        RGBColor(0x7f, 0x7f, 0x7f),
        RGBColor(0xbc, 0xbd, 0x22),
        RGBColor(0x17, 0xbe, 0xcf),
    ];
    let values = || series.iter().flat_map(|(_, v)| v.iter().copied());
    let vmax = values().fold(0.0f64, f64::max).max(1e-9);
    let vmin = values().fold(f64::INFINITY, f64::min).max(1e-9);
    let log = vmax / vmin > 20.0;
    // The y axis is drawn in units that put its ticks on whole numbers, which plotters' own tick
    // choice then keeps: powers of ten on a log scale (the axis is the exponent), fifths of the
    // top (110 % of the largest value) on a linear one.
    let (lo_exp, hi_exp) = (vmin.log10().floor(), vmax.log10().ceil());
    let top = vmax * 1.1;
    let (y_range, y_ticks) = if log {
        (lo_exp..hi_exp, (hi_exp - lo_exp) as usize + 1)
    } else {
        (0.0..5.0, 6)
    };
    let y = |v: f64| {
        if log {
            v.max(10f64.powf(lo_exp)).log10()
        } else {
            v / top * 5.0
        }
    };
    let tick_label = |t: &f64| {
        let v = if log {
            10f64.powi(t.round() as i32)
        } else {
            top * t.round() / 5.0
        };
        if v >= 1.0 || v == 0.0 {
            format!("{v:.0}")
        } else {
            format!("{v}")
        }
    };
    // The threads sit evenly spaced, by index, whatever their counts.
    let x_max = (threads.len().max(2) - 1) as f64;
    let thread_label = |i: &f64| {
        threads
            .get(i.round() as usize)
            .map_or_else(String::new, usize::to_string)
    };

    let root = SVGBackend::new(file, (W, H)).into_drawing_area();
    root.fill(&WHITE)?;
    let scale = if log { ", log scale" } else { "" };
    let body = root.titled(
        &format!("{title} — throughput (Mops/s, all threads{scale})"),
        ("sans-serif", 18),
    )?;
    let (plot, legend) = body.split_horizontally(W - LEGEND);
    let mut chart = ChartBuilder::on(&plot)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, y_range)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(threads.len().max(2))
        .y_labels(y_ticks)
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
        .light_line_style(TRANSPARENT)
        .x_label_formatter(&thread_label)
        .y_label_formatter(&tick_label)
        .x_desc("threads")
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 15))
        .draw()?;
    for (k, (name, v)) in series.iter().enumerate() {
        let c = COLORS[k % COLORS.len()];
        let points = v.iter().enumerate().map(|(i, &m)| (i as f64, y(m)));
        chart.draw_series(LineSeries::new(points, c.stroke_width(2)))?;
        let top = 10 + 18 * k as i32;
        legend.draw(&Rectangle::new([(12, top), (24, top + 12)], c.filled()))?;
        legend.draw(&Text::new(
            name.as_str(),
            (30, top),
            ("sans-serif", 15).into_font(),
        ))?;
    }
    root.present()?;
    Ok(())
}
