//! `statistics`: the daemon's counters, in 4.17's column layout or as one `-X`
//! header line plus one data line (reference §6.11, §9.11).

use ctdbd::protocol::statistics::{Latency, Statistics};
use ctdbd::protocol::Opcode;
use serde::Serialize;

use super::{json_via_serde, CommandError, Ctx, Report, Style};
use crate::client::bad_reply;
use crate::timefmt::{ctime, duration};

/// A latency counter as shown: samples, min, average, max (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencyView {
    /// Samples.
    pub num: i32,
    /// Smallest.
    pub min: f64,
    /// Mean (0 when there are no samples).
    pub avg: f64,
    /// Largest.
    pub max: f64,
}

impl From<Latency> for LatencyView {
    fn from(l: Latency) -> Self {
        Self {
            num: l.num,
            min: l.min,
            avg: if l.num > 0 {
                l.total / f64::from(l.num)
            } else {
                0.0
            },
            max: l.max,
        }
    }
}

/// `ctdb statistics`: named counters in 4.17's print order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatisticsReport {
    /// Statistics taken at (seconds since the epoch).
    pub current_time: i64,
    /// Collected since (seconds since the epoch).
    pub start_time: i64,
    /// Counters as (dotted name, value), in print order; a JSON object.
    #[serde(serialize_with = "ordered_map")]
    pub counters: Vec<(String, u32)>,
    /// Hop-count histogram.
    pub hop_count_buckets: [u32; 16],
    /// Lock-wait histogram.
    pub lock_buckets: [u32; 16],
    /// `locks.latency`.
    pub locks_latency: LatencyView,
    /// Recovery-lock latency seen by ctdbd.
    pub reclock_ctdbd: LatencyView,
    /// Recovery-lock latency seen by the recovery daemon.
    pub reclock_recd: LatencyView,
    /// Call latency.
    pub call_latency: LatencyView,
    /// Child-write latency.
    pub childwrite_latency: LatencyView,
}

impl StatisticsReport {
    /// Builds the view of a decoded reply.
    pub fn new(s: &Statistics) -> Self {
        let c = |name: &str, v: u32| (name.to_owned(), v);
        let counters = vec![
            c("num_clients", s.num_clients),
            c("frozen", s.frozen),
            c("recovering", s.recovering),
            c("num_recoveries", s.num_recoveries),
            c("client_packets_sent", s.client_packets_sent),
            c("client_packets_recv", s.client_packets_recv),
            c("node_packets_sent", s.node_packets_sent),
            c("node_packets_recv", s.node_packets_recv),
            c("keepalive_packets_sent", s.keepalive_packets_sent),
            c("keepalive_packets_recv", s.keepalive_packets_recv),
            c("node.req_call", s.node.req_call),
            c("node.reply_call", s.node.reply_call),
            c("node.req_dmaster", s.node.req_dmaster),
            c("node.reply_dmaster", s.node.reply_dmaster),
            c("node.reply_error", s.node.reply_error),
            c("node.req_message", s.node.req_message),
            c("node.req_control", s.node.req_control),
            c("node.reply_control", s.node.reply_control),
            c("node.req_tunnel", s.node.req_tunnel),
            c("client.req_call", s.client.req_call),
            c("client.req_message", s.client.req_message),
            c("client.req_control", s.client.req_control),
            c("client.req_tunnel", s.client.req_tunnel),
            c("timeouts.call", s.timeouts_call),
            c("timeouts.control", s.timeouts_control),
            c("timeouts.traverse", s.timeouts_traverse),
            c("locks.num_calls", s.locks_num_calls),
            c("locks.num_current", s.locks_num_current),
            c("locks.num_pending", s.locks_num_pending),
            c("locks.num_failed", s.locks_num_failed),
            c("total_calls", s.total_calls),
            c("pending_calls", s.pending_calls),
            c("childwrite_calls", s.childwrite_calls),
            c("pending_childwrite_calls", s.pending_childwrite_calls),
            c("memory_used", s.memory_used),
            c("max_hop_count", s.max_hop_count),
            c("total_ro_delegations", s.total_ro_delegations),
            c("total_ro_revokes", s.total_ro_revokes),
        ];
        Self {
            current_time: s.statistics_current_time.sec,
            start_time: s.statistics_start_time.sec,
            counters,
            hop_count_buckets: s.hop_count_bucket,
            lock_buckets: s.locks_buckets,
            locks_latency: s.locks_latency.into(),
            reclock_ctdbd: s.reclock_ctdbd.into(),
            reclock_recd: s.reclock_recd.into(),
            call_latency: s.call_latency.into(),
            childwrite_latency: s.childwrite_latency.into(),
        }
    }

    fn machine(&self, sep: &str) -> String {
        let mut head: Vec<String> = vec![
            "CTDB version".into(),
            "Current time of statistics".into(),
            "Statistics collected since".into(),
        ];
        let mut data: Vec<String> = vec![
            "1".into(),
            self.current_time.to_string(),
            self.start_time.to_string(),
        ];
        for (name, value) in &self.counters {
            head.push(name.clone());
            data.push(value.to_string());
        }
        let latencies = [
            ("reclock_ctdbd", &self.reclock_ctdbd),
            ("reclock_recd", &self.reclock_recd),
            ("call", &self.call_latency),
            ("lockwait", &self.locks_latency),
            ("childwrite", &self.childwrite_latency),
        ];
        for (name, l) in latencies {
            for prefix in ["num", "min", "avg", "max"] {
                head.push(format!("{prefix}_{name}_latency"));
            }
            data.push(l.num.to_string());
            data.push(format!("{:.6}", l.min));
            data.push(format!("{:.6}", l.avg));
            data.push(format!("{:.6}", l.max));
        }
        // These lines have a trailing separator but no leading one (§9.1).
        let line = |fields: &[String]| {
            let mut s = String::new();
            for f in fields {
                s.push_str(f);
                s.push_str(sep);
            }
            s.push('\n');
            s
        };
        line(&head) + &line(&data)
    }
}

/// Serializes pairs as a map, keeping their order (a JSON object in print order).
fn ordered_map<S: serde::Serializer>(pairs: &[(String, u32)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}

impl Report for StatisticsReport {
    fn text(&self, style: &Style) -> String {
        if let Some(sep) = &style.machine {
            return self.machine(sep);
        }
        let mut out = String::from("CTDB version 1\n");
        out.push_str(&format!(
            "Current time of statistics  :                {}",
            ctime(self.current_time)
        ));
        out.push_str(&format!(
            "Statistics collected since  : ({}) {}",
            duration(self.current_time - self.start_time),
            ctime(self.start_time)
        ));
        let mut group = "";
        for (name, value) in &self.counters {
            let (prefix, field) = match name.split_once('.') {
                Some((g, f)) => (g, f),
                None => ("", name.as_str()),
            };
            if prefix != group && !prefix.is_empty() {
                out.push_str(&format!(" {prefix}\n"));
            }
            group = prefix;
            let label = if prefix.is_empty() {
                format!(" {field}")
            } else {
                format!("     {field}")
            };
            if name == "pending_childwrite_calls" {
                // 4.17 prints this one two columns further right.
                out.push_str(&format!("{label:<29}{value:>10}\n"));
            } else {
                out.push_str(&format!("{label:<27}{value:>10}\n"));
            }
        }
        let buckets = |b: &[u32; 16]| b.iter().map(|v| format!(" {v}")).collect::<String>();
        out.push_str(&format!(
            " hop_count_buckets:{}\n",
            buckets(&self.hop_count_buckets)
        ));
        out.push_str(&format!(" lock_buckets:{}\n", buckets(&self.lock_buckets)));
        for (name, l) in [
            ("locks_latency", &self.locks_latency),
            ("reclock_ctdbd", &self.reclock_ctdbd),
            ("reclock_recd", &self.reclock_recd),
            ("call_latency", &self.call_latency),
            ("childwrite_latency", &self.childwrite_latency),
        ] {
            out.push_str(&format!(
                " {name:<18} MIN/AVG/MAX     {:.6}/{:.6}/{:.6} sec out of {}\n",
                l.min, l.avg, l.max, l.num
            ));
        }
        out
    }
    json_via_serde!();
}

/// `ctdb statistics`: STATISTICS.
pub fn statistics(ctx: &mut Ctx<'_>, args: &[String]) -> Result<StatisticsReport, CommandError> {
    if !args.is_empty() {
        return Err(CommandError::Usage("statistics"));
    }
    let data = ctx.client.control_ok(ctx.cmd, Opcode::STATISTICS, 0, &[])?;
    let stats = Statistics::decode(&data).map_err(|_| bad_reply(Opcode::STATISTICS, ctx.cmd))?;
    Ok(StatisticsReport::new(&stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The observed output for an all-zero reply (reference §9.11), minus the two
    /// time lines, which depend on the local zone.
    const ZERO_BODY: &str = " num_clients                        0
 frozen                             0
 recovering                         0
 num_recoveries                     0
 client_packets_sent                0
 client_packets_recv                0
 node_packets_sent                  0
 node_packets_recv                  0
 keepalive_packets_sent             0
 keepalive_packets_recv             0
 node
     req_call                       0
     reply_call                     0
     req_dmaster                    0
     reply_dmaster                  0
     reply_error                    0
     req_message                    0
     req_control                    0
     reply_control                  0
     req_tunnel                     0
 client
     req_call                       0
     req_message                    0
     req_control                    0
     req_tunnel                     0
 timeouts
     call                           0
     control                        0
     traverse                       0
 locks
     num_calls                      0
     num_current                    0
     num_pending                    0
     num_failed                     0
 total_calls                        0
 pending_calls                      0
 childwrite_calls                   0
 pending_childwrite_calls             0
 memory_used                        0
 max_hop_count                      0
 total_ro_delegations               0
 total_ro_revokes                   0
 hop_count_buckets: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 lock_buckets: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 locks_latency      MIN/AVG/MAX     0.000000/0.000000/0.000000 sec out of 0
 reclock_ctdbd      MIN/AVG/MAX     0.000000/0.000000/0.000000 sec out of 0
 reclock_recd       MIN/AVG/MAX     0.000000/0.000000/0.000000 sec out of 0
 call_latency       MIN/AVG/MAX     0.000000/0.000000/0.000000 sec out of 0
 childwrite_latency MIN/AVG/MAX     0.000000/0.000000/0.000000 sec out of 0
";

    #[test]
    fn plain_all_zero_matches_observed() {
        let report = StatisticsReport::new(&Statistics::default());
        let text = report.text(&Style::default());
        let expected = format!(
            "CTDB version 1\nCurrent time of statistics  :                {}\
             Statistics collected since  : (000 00:00:00) {}{ZERO_BODY}",
            ctime(0),
            ctime(0)
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn plain_wide_values_keep_the_right_edge() {
        // Observed from a live 4.17 daemon: values end at column 37.
        let stats = Statistics {
            client_packets_sent: 1174,
            memory_used: 79338,
            ..Statistics::default()
        };
        let text = StatisticsReport::new(&stats).text(&Style::default());
        assert!(text.contains("\n client_packets_sent             1174\n"));
        assert!(text.contains("\n memory_used                    79338\n"));
    }

    #[test]
    fn machine_header_matches_observed() {
        let report = StatisticsReport::new(&Statistics::default());
        let style = Style {
            machine: Some("|".to_owned()),
            verbose: false,
        };
        let text = report.text(&style);
        let (head, data) = text.split_once('\n').unwrap();
        assert_eq!(
            head,
            "CTDB version|Current time of statistics|Statistics collected since|num_clients|frozen|recovering|num_recoveries|client_packets_sent|client_packets_recv|node_packets_sent|node_packets_recv|keepalive_packets_sent|keepalive_packets_recv|node.req_call|node.reply_call|node.req_dmaster|node.reply_dmaster|node.reply_error|node.req_message|node.req_control|node.reply_control|node.req_tunnel|client.req_call|client.req_message|client.req_control|client.req_tunnel|timeouts.call|timeouts.control|timeouts.traverse|locks.num_calls|locks.num_current|locks.num_pending|locks.num_failed|total_calls|pending_calls|childwrite_calls|pending_childwrite_calls|memory_used|max_hop_count|total_ro_delegations|total_ro_revokes|num_reclock_ctdbd_latency|min_reclock_ctdbd_latency|avg_reclock_ctdbd_latency|max_reclock_ctdbd_latency|num_reclock_recd_latency|min_reclock_recd_latency|avg_reclock_recd_latency|max_reclock_recd_latency|num_call_latency|min_call_latency|avg_call_latency|max_call_latency|num_lockwait_latency|min_lockwait_latency|avg_lockwait_latency|max_lockwait_latency|num_childwrite_latency|min_childwrite_latency|avg_childwrite_latency|max_childwrite_latency|"
        );
        assert!(data.starts_with("1|0|0|0|0|"));
        assert!(data.ends_with("|0|0.000000|0.000000|0.000000|\n"));
    }
}
