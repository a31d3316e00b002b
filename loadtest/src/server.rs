//! What the load test reads of the server itself: its CPU time from /proc (Linux) and its
//! Prometheus counters from `/metrics`, to compare before and after the measurement window.

use std::collections::BTreeMap;

/// CPU seconds (user + system) of a process so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux this runs on; reading it would need libc.
    Some(ticks / 100.0)
}

/// Resident memory of a process in KiB (`VmRSS` of /proc/<pid>/status, Linux).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Connections this machine's kernel refused or dropped so far because a listening socket's
/// accept queue was full (`ListenOverflows` of /proc/net/netstat, every socket of the network
/// namespace). A client whose SYN is dropped so retries it after 1, 2, 4... seconds: a server
/// that accepts too slowly shows as connections that take seconds, before any handler runs.
pub fn listen_overflows() -> Option<u64> {
    let netstat = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = netstat.lines().filter(|line| line.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let idx = names.split_whitespace().position(|name| name == "ListenOverflows")?;
    values.split_whitespace().nth(idx)?.parse().ok()
}

/// CPU seconds all processes of this machine used so far (every core, from /proc/stat), to tell
/// how much the server and this load test had to share it with.
pub fn machine_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    // user nice system idle iowait irq softirq steal...: busy is all but idle and iowait.
    let ticks: Vec<f64> = cpu.split_whitespace().filter_map(|t| t.parse().ok()).collect();
    let busy: f64 = ticks.iter().enumerate().filter(|(idx, _)| *idx != 3 && *idx != 4).map(|(_, t)| t).sum();
    Some(busy / 100.0)
}

/// Datagrams dropped so far for a full receive buffer on the UDP sockets that process `pid`
/// holds (from the `drops` column of /proc/net/udp and udp6, matched by socket inode).
pub fn udp_socket_drops(pid: u32) -> Option<u64> {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|entry| {
            let target = std::fs::read_link(entry.ok()?.path()).ok()?;
            let target = target.to_str()?;
            Some(target.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let mut drops = 0;
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
            if fields.len() >= 13 && inodes.contains(fields[9]) {
                drops += fields[12].parse::<u64>().unwrap_or(0);
            }
        }
    }
    Some(drops)
}

/// Counter values by series (`name{labels}` as the server writes them).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Metrics(pub BTreeMap<String, f64>);

impl Metrics {
    pub async fn scrape(http: &reqwest::Client, base_url: &str) -> anyhow::Result<Metrics> {
        let text = http.get(format!("{base_url}/metrics")).send().await?.error_for_status()?.text().await?;
        Ok(Metrics::parse(&text))
    }

    pub fn parse(text: &str) -> Metrics {
        let series = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                Some((series.trim().to_owned(), value.trim().parse().ok()?))
            })
            .collect();
        Metrics(series)
    }

    /// The series of `name`, with their label sets.
    pub fn family<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
        self.0.iter().filter_map(move |(series, value)| {
            let labels = series.strip_prefix(name)?;
            (labels.is_empty() || labels.starts_with('{')).then_some((labels, *value))
        })
    }

    /// The sum of `name`'s series whose labels contain `label` (e.g. `direction="out"`).
    pub fn sum(&self, name: &str, label: &str) -> f64 {
        self.family(name).filter(|(labels, _)| labels.contains(label)).map(|(_, v)| v).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_by_family_and_label() {
        let metrics = Metrics::parse(
            "# HELP sfu_rtp_packets_total RTP packets.\n\
             sfu_rtp_packets_total{direction=\"in\",kind=\"audio\"} 10\n\
             sfu_rtp_packets_total{direction=\"out\",kind=\"audio\"} 30\n\
             sfu_rtp_packets_total{direction=\"out\",kind=\"video\"} 12\n\
             sfu_rtp_packets_total_other 5\n\
             sfu_rooms 1\n",
        );
        assert_eq!(metrics.sum("sfu_rtp_packets_total", "direction=\"out\""), 42.0);
        assert_eq!(metrics.family("sfu_rtp_packets_total").count(), 3);
        assert_eq!(metrics.family("sfu_rooms").collect::<Vec<_>>(), vec![("", 1.0)]);
    }
}
