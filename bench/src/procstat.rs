//! RSS and CPU time of a process tree (given PIDs and all their descendants), read from /proc.

use std::collections::{HashMap, HashSet};
use std::fs;

use serde::{Deserialize, Serialize};

/// One reading of a process tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Sum of VmRSS over the tree, KiB.
    pub rss_kib: u64,
    /// Sum of utime + stime over the tree, seconds.
    pub cpu_s: f64,
    /// Processes in the tree when sampled.
    pub processes: usize,
}

/// The fields of /proc/PID/stat this tool reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub ppid: u32,
    /// utime + stime, clock ticks.
    pub ticks: u64,
}

/// Parses /proc/PID/stat; the command name may hold spaces and parentheses.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let after = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_ascii_whitespace().collect();
    // After the name: state(3) ppid(4) ... utime(14) stime(15), numbered as in proc(5).
    let ppid = f.get(1)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(Stat {
        ppid,
        ticks: utime + stime,
    })
}

/// VmRSS in KiB from /proc/PID/status (0 for kernel threads, which have none).
pub fn parse_vm_rss(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_ascii_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Clock ticks per second, from the auxiliary vector (AT_CLKTCK); 100 if unreadable.
pub fn clock_ticks() -> u64 {
    const AT_CLKTCK: u64 = 17;
    let Ok(aux) = fs::read("/proc/self/auxv") else {
        return 100;
    };
    aux.chunks_exact(16)
        .find_map(|kv| {
            let k = u64::from_ne_bytes(kv[..8].try_into().ok()?);
            let v = u64::from_ne_bytes(kv[8..].try_into().ok()?);
            (k == AT_CLKTCK && v > 0).then_some(v)
        })
        .unwrap_or(100)
}

/// The given PIDs and every live descendant, from a parent map.
pub fn tree(roots: &[u32], parents: &HashMap<u32, u32>) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, &ppid) in parents {
        children.entry(ppid).or_default().push(pid);
    }
    let mut seen = HashSet::new();
    let mut stack: Vec<u32> = roots
        .iter()
        .copied()
        .filter(|p| parents.contains_key(p))
        .collect();
    let mut out = Vec::new();
    while let Some(p) = stack.pop() {
        if seen.insert(p) {
            out.push(p);
            stack.extend(children.get(&p).into_iter().flatten());
        }
    }
    out.sort_unstable();
    out
}

/// Samples `roots` and all their descendants; `None` if none of them is alive.
pub fn sample(roots: &[u32]) -> Option<Sample> {
    let mut stats = HashMap::new();
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(st) = fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|t| parse_stat(&t))
        {
            stats.insert(pid, st);
        }
    }
    let parents = stats.iter().map(|(&p, s)| (p, s.ppid)).collect();
    let pids = tree(roots, &parents);
    if pids.is_empty() {
        return None;
    }
    let hz = clock_ticks() as f64;
    let mut s = Sample {
        processes: pids.len(),
        ..Sample::default()
    };
    for pid in pids {
        s.cpu_s += stats[&pid].ticks as f64 / hz;
        s.rss_kib += fs::read_to_string(format!("/proc/{pid}/status"))
            .map(|t| parse_vm_rss(&t))
            .unwrap_or(0);
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let line = "1234 (nginx: worker (x) ) S 1200 1200 1200 0 -1 4194624 10 0 0 0 250 75 3 4 20 0 1 0 100 1000 200";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                ppid: 1200,
                ticks: 325
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn parses_vm_rss() {
        assert_eq!(
            parse_vm_rss("Name:\tx\nVmPeak:\t 9 kB\nVmRSS:\t   20480 kB\n"),
            20480
        );
        assert_eq!(parse_vm_rss("Name:\tkthreadd\n"), 0);
    }

    #[test]
    fn walks_descendants() {
        let parents: HashMap<u32, u32> = [(1, 0), (10, 1), (11, 10), (12, 10), (13, 11), (20, 1)]
            .into_iter()
            .collect();
        assert_eq!(tree(&[10], &parents), [10, 11, 12, 13]);
        assert_eq!(tree(&[10, 11, 99], &parents), [10, 11, 12, 13]);
        assert!(tree(&[99], &parents).is_empty());
    }

    #[test]
    fn samples_this_process() {
        let s = sample(&[std::process::id()]).expect("this process is alive");
        assert!(s.rss_kib > 0 && s.processes >= 1);
        assert!(clock_ticks() > 0);
    }
}
