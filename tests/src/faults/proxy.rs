//! A loopback TCP proxy in front of the kube-apiserver, for the slow and the dropping apiserver faults.
//!
//! Bytes pass through untouched — TLS included, so clients verify the apiserver's own certificate, which is
//! valid for 127.0.0.1 whatever the port (`kube_env::pki`). The controller and the agents are given a
//! kubeconfig naming the proxy; the invariant checker and the harness talk to the apiserver directly, so a
//! fault of the proxy never blinds the judge.
//!
//! Modes, switched at any time: [`Mode::Pass`]; [`Mode::Delay`] holds every chunk read, in either direction,
//! for the given time before forwarding it (a slow network or an overloaded apiserver: watches lag, requests
//! take longer, nothing fails by itself); [`Mode::Drop`] cuts every open connection and closes each new one
//! at once, until the mode changes (an apiserver that vanished from the network).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

/// What the proxy does with the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Delay(Duration),
    Drop,
}

/// The running proxy; dropping it stops accepting and cuts every connection.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    mode: Arc<watch::Sender<Mode>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mode = Arc::new(watch::Sender::new(Mode::Pass));
        let accept = tokio::spawn(accept_loop(listener, upstream, mode.clone()));
        Ok(Proxy { addr, mode, accept })
    }

    /// `https://127.0.0.1:<port>`: the server URL for a kubeconfig.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Open connections watch the mode and end on Drop.
        self.mode.send_replace(Mode::Drop);
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, mode: Arc<watch::Sender<Mode>>) {
    loop {
        let Ok((client, _)) = listener.accept().await else { continue };
        if *mode.borrow() == Mode::Drop {
            // Closed before a byte is read: the client's TLS handshake fails as against a vanished server.
            drop(client);
            continue;
        }
        tokio::spawn(connection(client, upstream, mode.subscribe()));
    }
}

/// One client connection: dial upstream (a refused dial closes the client, as the apiserver being down
/// would), then pump both ways until either side closes or the mode turns to Drop.
async fn connection(client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>) {
    let Ok(server) = TcpStream::connect(upstream).await else { return };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(client_read, server_write, mode.clone());
    let down = pump(server_read, client_write, mode.clone());
    let dropped = async move {
        let _ = mode.wait_for(|m| *m == Mode::Drop).await;
    };
    // Any of the three ending ends the connection: the halves are dropped, which closes both sockets.
    tokio::select! {
        () = up => {}
        () = down => {}
        () = dropped => {}
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mode: watch::Receiver<Mode>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let current = *mode.borrow();
        match current {
            Mode::Drop => return,
            Mode::Delay(d) => tokio::time::sleep(d).await,
            Mode::Pass => {}
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server behind the proxy: bytes pass, a delay is applied per chunk, Drop cuts and refuses.
    #[tokio::test]
    async fn passes_delays_and_drops() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = echo.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = echo.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let proxy = Proxy::start(upstream).await.unwrap();
        let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
        let mut buf = [0u8; 5];
        conn.write_all(b"hello").await.unwrap();
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");

        proxy.set(Mode::Delay(Duration::from_millis(150)));
        let started = std::time::Instant::now();
        conn.write_all(b"again").await.unwrap();
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"again");
        // Held once on the way in and once on the way out.
        assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());

        proxy.set(Mode::Drop);
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut rest)).await.unwrap();
        assert!(matches!(n, Ok(0) | Err(_)), "an open connection is cut");
        let mut fresh = TcpStream::connect(proxy.addr).await.unwrap();
        let read = tokio::time::timeout(Duration::from_secs(5), fresh.read(&mut buf)).await.unwrap();
        assert!(matches!(read, Ok(0) | Err(_)), "a new connection is closed at once");

        proxy.set(Mode::Pass);
        let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
        conn.write_all(b"back!").await.unwrap();
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"back!");
    }
}
