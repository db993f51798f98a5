//! Cost of one IP allocation as the cluster grows (`cargo bench -p ctdbd --bench
//! ipalloc`; the table goes into BENCHMARKS.md).
//!
//! Scenario, for each size (nodes x addresses) and each algorithm: the addresses are
//! spread over several /24s (round robin, at most 250 per /24, at least four /24s);
//! the previous takeover run happened while the last node was failed, so the others
//! hold the addresses round robin and the last node holds none; now every node is
//! healthy and every node knows every address. Timed: one `allocate` call, including
//! merging the views. Log level ERR, so no log line is formatted.
//!
//! No bench framework: a few warm-up runs, then the median (and minimum) of N timed
//! runs with `std::time::Instant`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ctdbd::ipalloc::{allocate, Algorithm, Input, KnownIp, LogLevel, NodeView, Settings};

const SIZES: [(usize, usize); 3] = [(8, 64), (64, 1024), (256, 4096)];
const ALGORITHMS: [Algorithm; 3] = [
    Algorithm::Deterministic,
    Algorithm::NonDeterministic,
    Algorithm::Lcp2,
];
const WARM_UP: usize = 3;
const RUNS: usize = 21;

fn scenario(nodes: usize, ips: usize, algorithm: Algorithm) -> Input {
    let subnets = ips.div_ceil(250).max(4);
    let known: Vec<KnownIp> = (0..ips)
        .map(|i| {
            let subnet = u8::try_from(i % subnets).expect("fewer than 256 subnets");
            let host = u8::try_from(1 + i / subnets).expect("at most 250 hosts per subnet");
            KnownIp {
                addr: IpAddr::V4(Ipv4Addr::new(10, 1, subnet, host)),
                owner: Some(u32::try_from(i % (nodes - 1)).expect("few nodes")),
            }
        })
        .collect();
    Input {
        nodes: (0..nodes)
            .map(|_| NodeView::new(known.clone(), true))
            .collect(),
        settings: Settings {
            algorithm,
            ..Settings::default()
        },
        log_level: LogLevel::Error,
    }
}

fn measure(input: &Input) -> (Duration, Duration, usize) {
    let mut moved = 0;
    for _ in 0..WARM_UP {
        let out = allocate(black_box(input));
        // How many addresses the run gave to the recovered (last) node.
        let last = u32::try_from(input.nodes.len() - 1).expect("few nodes");
        moved = out.ips.iter().filter(|a| a.owner == Some(last)).count();
    }
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            black_box(allocate(black_box(input)));
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[RUNS / 2], times[0], moved)
}

fn main() {
    println!(
        "{:>12}  {:<7}  {:>12}  {:>12}  {:>14}",
        "nodes x IPs", "algo", "median", "min", "IPs to new node"
    );
    for (nodes, ips) in SIZES {
        for algorithm in ALGORITHMS {
            let input = scenario(nodes, ips, algorithm);
            let (median, min, moved) = measure(&input);
            println!(
                "{:>12}  {:<7}  {:>12.3?}  {:>12.3?}  {:>14}",
                format!("{nodes}x{ips}"),
                algorithm.short_name(),
                median,
                min,
                moved
            );
        }
    }
}
