//! The TCP ports listening in the pod's network namespace, from `/proc/net/tcp` and `/proc/net/tcp6`.
//!
//! DittoFS's `/health/ready` names the running adapter types but not their ports, and everything that does
//! (the adapter list) costs an INFO line in its log. A port change, though, is visible without asking
//! DittoFS: its PUT handler stops the adapter (closing the old listener) and starts it on the new port, all
//! before it answers (DittoFS v0.29.0 `pkg/controlplane/runtime/adapters/service.go` `UpdateAdapter`). The
//! sidecar shares the pod's network namespace, so a listed adapter port that no longer listens is a change
//! to poll for. Reading these files costs DittoFS nothing and logs nothing.

use std::collections::BTreeSet;
use std::io::Read as _;

/// The files read: IPv4 and IPv6 sockets of this network namespace.
const FILES: [&str; 2] = ["/proc/net/tcp", "/proc/net/tcp6"];

/// Largest file read (about 25,000 sockets): a pod has a handful; past this the answer is "unknown".
const MAX_BYTES: u64 = 4 << 20;

/// The `st` column of a socket in the LISTEN state.
const LISTEN: &str = "0A";

/// The local ports in the LISTEN state, or `None` when they cannot be read completely (no `/proc`, a file
/// past [`MAX_BYTES`]): then nothing is concluded from them.
pub fn listening_ports() -> Option<BTreeSet<u16>> {
    let mut ports = BTreeSet::new();
    for file in FILES {
        let mut text = String::new();
        let read = std::fs::File::open(file).and_then(|f| f.take(MAX_BYTES + 1).read_to_string(&mut text));
        match read {
            Ok(n) if (n as u64) <= MAX_BYTES => ports.extend(parse(&text)),
            // No IPv6 in the kernel: no tcp6 file, and no IPv6 listener either.
            Err(e) if file.ends_with('6') && e.kind() == std::io::ErrorKind::NotFound => {}
            _ => return None,
        }
    }
    Some(ports)
}

/// The LISTEN ports of one `/proc/net/tcp*` text: after the header, each line is
/// `sl local_address rem_address st …` with the address as `HEXIP:HEXPORT`. Malformed lines are skipped.
fn parse(text: &str) -> impl Iterator<Item = u16> + '_ {
    text.lines().skip(1).filter_map(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1)?;
        let state = fields.nth(1)?;
        if state != LISTEN {
            return None;
        }
        u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()
    })
}

/// Of the ports `expected` to listen, those that do not: empty when all do or when `listening` is unknown.
pub fn closed(expected: &BTreeSet<u16>, listening: Option<&BTreeSet<u16>>) -> BTreeSet<u16> {
    match listening {
        Some(listening) => expected.difference(listening).copied().collect(),
        None => BTreeSet::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines as Linux prints them (trimmed after `st`'s neighbours): a listener on 0.0.0.0:12049, an
    // established connection from port 8080, a listener on 127.0.0.1:8080 and one in TIME_WAIT.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:2F11 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1
   3: 0100007F:A3C2 0100007F:1F90 06 00000000:00000000 03:00000F6A 00000000     0        0 0 3
   4: garbage
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:30AD 00000000000000000000000000000000:0000 0A 00000000:00000000
";

    #[test]
    fn only_listening_sockets_count_from_both_families() {
        assert_eq!(parse(TCP).collect::<BTreeSet<_>>(), BTreeSet::from([0x2F11, 0x1F90]));
        assert_eq!(parse(TCP6).collect::<Vec<_>>(), vec![12461]);
        assert_eq!(parse("header only\n").count(), 0);
    }

    #[test]
    fn closed_ports_are_the_expected_ones_not_listening_and_nothing_when_unknown() {
        let expected = BTreeSet::from([12049, 12445]);
        assert_eq!(closed(&expected, Some(&BTreeSet::from([12049, 8080]))), BTreeSet::from([12445]));
        assert!(closed(&expected, Some(&BTreeSet::from([12049, 12445]))).is_empty());
        assert!(closed(&expected, None).is_empty(), "unknown is no evidence");
    }

    #[test]
    fn this_machine_s_listeners_are_read() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(listening_ports().unwrap().contains(&port));
        drop(listener);
        assert!(!listening_ports().unwrap().contains(&port));
    }
}
