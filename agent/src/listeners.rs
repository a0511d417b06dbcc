//! The TCP ports listening in the pod's network namespace, asked of the kernel through netlink (sock_diag).
//!
//! DittoFS's `/health/ready` names the running adapter types but not their ports, and everything that does
//! (the adapter list) costs an INFO line in its log. A port change, though, is visible without asking
//! DittoFS: its PUT handler stops the adapter (closing the old listener) and starts it on the new port, all
//! before it answers (DittoFS v0.29.0 `pkg/controlplane/runtime/adapters/service.go` `UpdateAdapter`). The
//! sidecar shares the pod's network namespace, so a listed adapter port that no longer listens is a change
//! to poll for. It costs DittoFS nothing and logs nothing.
//!
//! Why netlink and not `/proc/net/tcp`: the kernel builds that file by walking the whole established-socket
//! hash table (262,144 buckets on a 24 GiB machine, shared by every namespace), about 5 ms of CPU per read
//! whatever the pod holds — 40 millicores at a 250 ms period. A sock_diag dump asking for LISTEN sockets
//! only walks the listening table.

use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::net::{
    AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, netlink, recv, sendto, socket_with, sockopt,
};

/// `SOCK_DIAG_BY_FAMILY`, the request type of a sock_diag dump.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `NLM_F_REQUEST | NLM_F_DUMP`.
const DUMP_REQUEST: u16 = 0x1 | 0x300;
/// `NLMSG_ERROR` and `NLMSG_DONE`.
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// `AF_INET`, `AF_INET6`, `IPPROTO_TCP`, and the state mask of `TCP_LISTEN` (state 10).
const FAMILIES: [u8; 2] = [2, 10];
const IPPROTO_TCP: u8 = 6;
const LISTEN_STATES: u32 = 1 << 10;
/// An `nlmsghdr` and the `inet_diag_req_v2` after it.
const HEADER: usize = 16;
const REQUEST_LEN: usize = HEADER + 56;

/// Most reads of one dump (a pod has a handful of listeners; a larger answer is not concluded from).
const MAX_READS: usize = 64;
/// How long one read may wait: the kernel answers a dump at once, this only bounds a surprise.
const READ_TIMEOUT: Duration = Duration::from_millis(200);

/// A sock_diag socket kept open from one sample to the next, and the buffer its answers are read into:
/// opening and closing a netlink socket at every sample cost more CPU than the dump itself (an inode and a
/// socket allocated and freed four times a second).
#[derive(Debug, Default)]
pub struct Listeners {
    socket: Option<OwnedFd>,
    buffer: Vec<u8>,
}

impl Listeners {
    /// The local ports in the LISTEN state, IPv4 and IPv6, or `None` when they cannot be read completely
    /// (no netlink, a refused or oversized answer): then nothing is concluded from them, and the next call
    /// starts on a new socket, so nothing left of an unfinished dump is read as the next one's answer.
    pub fn listening_ports(&mut self) -> Option<BTreeSet<u16>> {
        let ports = self.dump();
        if ports.is_none() {
            self.socket = None;
        }
        ports
    }

    fn dump(&mut self) -> Option<BTreeSet<u16>> {
        if self.socket.is_none() {
            let fd =
                socket_with(AddressFamily::NETLINK, SocketType::DGRAM, SocketFlags::CLOEXEC, Some(netlink::SOCK_DIAG))
                    .ok()?;
            sockopt::set_socket_timeout(&fd, sockopt::Timeout::Recv, Some(READ_TIMEOUT)).ok()?;
            self.socket = Some(fd);
        }
        let fd = self.socket.as_ref()?;
        if self.buffer.is_empty() {
            self.buffer = vec![0u8; 32 * 1024];
        }
        let kernel = netlink::SocketAddrNetlink::new(0, 0);
        let mut ports = BTreeSet::new();
        for (seq, family) in (1..).zip(FAMILIES) {
            sendto(fd, &request(family, seq), SendFlags::empty(), &kernel).ok()?;
            let mut done = false;
            for _ in 0..MAX_READS {
                let (read, _) = recv(fd, &mut self.buffer[..], RecvFlags::empty()).ok()?;
                let answer = parse(&self.buffer[..read], &mut ports)?;
                if answer == Answer::Done {
                    done = true;
                    break;
                }
            }
            if !done {
                return None;
            }
        }
        Some(ports)
    }
}

/// A dump request for the TCP sockets of `family` in the LISTEN state.
fn request(family: u8, seq: u32) -> [u8; REQUEST_LEN] {
    let mut req = [0u8; REQUEST_LEN];
    req[0..4].copy_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req[6..8].copy_from_slice(&DUMP_REQUEST.to_ne_bytes());
    req[8..12].copy_from_slice(&seq.to_ne_bytes());
    // inet_diag_req_v2: family, protocol, extensions, padding, the state mask; the socket id stays zero.
    req[HEADER] = family;
    req[HEADER + 1] = IPPROTO_TCP;
    req[HEADER + 4..HEADER + 8].copy_from_slice(&LISTEN_STATES.to_ne_bytes());
    req
}

/// What one read of a dump held besides its sockets.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    More,
    Done,
}

/// Adds the local port of every `inet_diag_msg` in `buf` to `ports`; `None` on an error message or a
/// malformed one. The port is at bytes 4..6 of the message, in network order (`inet_diag_sockid.sport`).
fn parse(buf: &[u8], ports: &mut BTreeSet<u16>) -> Option<Answer> {
    let mut rest = buf;
    while rest.len() >= HEADER {
        let len = u32::from_ne_bytes(rest[0..4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(rest[4..6].try_into().ok()?);
        if len < HEADER || len > rest.len() {
            return None;
        }
        match kind {
            NLMSG_DONE => return Some(Answer::Done),
            NLMSG_ERROR => return None,
            _ => {
                let port = rest.get(HEADER + 4..HEADER + 6)?;
                ports.insert(u16::from_be_bytes([port[0], port[1]]));
            }
        }
        // Messages are aligned to four bytes.
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    Some(Answer::More)
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

    /// One netlink message of `kind` with `payload`, padded to four bytes.
    fn message(kind: u16, payload: &[u8]) -> Vec<u8> {
        let len = HEADER + payload.len();
        let mut out = Vec::new();
        out.extend((len as u32).to_ne_bytes());
        out.extend(kind.to_ne_bytes());
        out.extend([0u8; 10]);
        out.extend(payload);
        out.resize(len.next_multiple_of(4), 0);
        out
    }

    /// An `inet_diag_msg` of a listener on `port` (only the fields read are set).
    fn socket(port: u16) -> Vec<u8> {
        let mut msg = vec![0u8; 70];
        msg[0] = 2;
        msg[1] = 10;
        msg[4..6].copy_from_slice(&port.to_be_bytes());
        msg
    }

    #[test]
    fn a_request_asks_for_listening_tcp_sockets_of_one_family() {
        let req = request(10, 7);
        assert_eq!(u32::from_ne_bytes(req[0..4].try_into().unwrap()), 72);
        assert_eq!(u16::from_ne_bytes(req[4..6].try_into().unwrap()), SOCK_DIAG_BY_FAMILY);
        assert_eq!(u32::from_ne_bytes(req[8..12].try_into().unwrap()), 7);
        assert_eq!((req[16], req[17]), (10, 6));
        assert_eq!(u32::from_ne_bytes(req[20..24].try_into().unwrap()), 1 << 10);
    }

    #[test]
    fn answers_give_their_ports_until_done_and_nothing_on_an_error_or_garbage() {
        let mut ports = BTreeSet::new();
        let first = [message(SOCK_DIAG_BY_FAMILY, &socket(12049)), message(SOCK_DIAG_BY_FAMILY, &socket(8080))];
        assert_eq!(parse(&first.concat(), &mut ports), Some(Answer::More));
        let last = [message(SOCK_DIAG_BY_FAMILY, &socket(12445)), message(NLMSG_DONE, &[0; 4])];
        assert_eq!(parse(&last.concat(), &mut ports), Some(Answer::Done));
        assert_eq!(ports, BTreeSet::from([8080, 12049, 12445]));
        assert_eq!(parse(&message(NLMSG_ERROR, &[0; 20]), &mut ports), None);
        let mut cut = message(SOCK_DIAG_BY_FAMILY, &socket(1));
        cut.truncate(30);
        assert_eq!(parse(&cut, &mut ports), None, "a message longer than the read");
    }

    #[test]
    fn closed_ports_are_the_expected_ones_not_listening_and_nothing_when_unknown() {
        let expected = BTreeSet::from([12049, 12445]);
        assert_eq!(closed(&expected, Some(&BTreeSet::from([12049, 8080]))), BTreeSet::from([12445]));
        assert!(closed(&expected, Some(&BTreeSet::from([12049, 12445]))).is_empty());
        assert!(closed(&expected, None).is_empty(), "unknown is no evidence");
    }

    #[test]
    fn this_machine_s_listeners_are_read_in_both_families() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let v6 = std::net::TcpListener::bind("[::1]:0").ok();
        let connected = std::net::TcpStream::connect(v4.local_addr().unwrap()).unwrap();
        let mut listeners = Listeners::default();
        let ports = listeners.listening_ports().unwrap();
        assert!(ports.contains(&v4.local_addr().unwrap().port()));
        if let Some(v6) = &v6 {
            assert!(ports.contains(&v6.local_addr().unwrap().port()));
        }
        assert!(!ports.contains(&connected.local_addr().unwrap().port()), "a connection is no listener");
        let port = v4.local_addr().unwrap().port();
        drop(v4);
        assert!(!listeners.listening_ports().unwrap().contains(&port), "the same socket reads again");
        assert!(listeners.socket.is_some());
    }
}
