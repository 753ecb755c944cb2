//! [`FaultProxy`]: a loopback TCP proxy in front of an engine that a test can cut, to see
//! what clients do while the engine is unreachable without stopping the engine (whose
//! data, like moto's, may live only in its memory).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forwards every byte both ways.
    Pass,
    /// Closes open connections and every new one as soon as it is accepted: the engine
    /// looks stopped.
    Refuse,
    /// Accepts connections and never answers; open ones stop moving: the engine looks
    /// hung or partitioned away, so clients wait out their own timeouts.
    Stall,
}

/// A TCP proxy on 127.0.0.1 in front of `upstream`, switched between [`ProxyMode`]s.
/// Dropping it closes every connection through it.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    mode: Arc<watch::Sender<ProxyMode>>,
    accepted: Arc<AtomicU64>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (mode, _) = watch::channel(ProxyMode::Pass);
        let mode = Arc::new(mode);
        let accepted = Arc::new(AtomicU64::new(0));
        let accept = tokio::spawn(accept_loop(
            listener,
            upstream,
            Arc::clone(&mode),
            Arc::clone(&accepted),
        ));
        Ok(FaultProxy {
            addr,
            mode,
            accepted,
            accept,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches the mode; open connections end at once unless the new mode is
    /// [`ProxyMode::Pass`] or they were already passing and still are.
    pub fn set(&self, mode: ProxyMode) {
        self.mode.send_replace(mode);
    }

    /// The mode now.
    pub fn mode(&self) -> ProxyMode {
        *self.mode.borrow()
    }

    /// Connections accepted so far, in any mode.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Connection tasks watch the mode: a refusal ends them all.
        self.mode.send_replace(ProxyMode::Refuse);
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    mode: Arc<watch::Sender<ProxyMode>>,
    accepted: Arc<AtomicU64>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of file descriptors and the like: try again shortly.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        accepted.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(serve(client, upstream, mode.subscribe()));
    }
}

/// One client connection, for as long as the mode lets it live.
async fn serve(mut client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<ProxyMode>) {
    let _ = client.set_nodelay(true);
    let start = *mode.borrow_and_update();
    match start {
        ProxyMode::Refuse => {}
        ProxyMode::Stall => {
            // Held, unread, until the mode changes; then closed (the client reconnects).
            let _ = mode.changed().await;
        }
        ProxyMode::Pass => {
            let Ok(mut server) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = server.set_nodelay(true);
            loop {
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
                    changed = mode.changed() => {
                        match changed.map(|()| *mode.borrow_and_update()) {
                            Ok(ProxyMode::Pass) => continue,
                            Ok(ProxyMode::Stall) => {
                                // Stop moving bytes; close once the stall ends.
                                let _ = mode.changed().await;
                                return;
                            }
                            Ok(ProxyMode::Refuse) | Err(_) => return,
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// An upstream that echoes what it reads.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = socket.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(addr: SocketAddr) -> io::Result<Vec<u8>> {
        let mut socket = TcpStream::connect(addr).await?;
        socket.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tokio::time::timeout(Duration::from_millis(300), socket.read_exact(&mut buf))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer"))??;
        Ok(buf.to_vec())
    }

    #[tokio::test]
    async fn passes_refuses_stalls_and_passes_again() {
        let proxy = FaultProxy::start(echo().await).await.unwrap();
        assert_eq!(round_trip(proxy.addr()).await.unwrap(), b"ping");

        // An open connection ends when the proxy refuses.
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        open.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        open.read_exact(&mut one).await.unwrap();
        proxy.set(ProxyMode::Refuse);
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(2), open.read_to_end(&mut rest))
            .await
            .expect("the refused connection closes");
        assert!(read.is_err() || rest.is_empty(), "{read:?} {rest:?}");
        assert!(round_trip(proxy.addr()).await.is_err());

        proxy.set(ProxyMode::Stall);
        let err = round_trip(proxy.addr()).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");

        proxy.set(ProxyMode::Pass);
        assert_eq!(round_trip(proxy.addr()).await.unwrap(), b"ping");
        assert_eq!(proxy.mode(), ProxyMode::Pass);
        assert_eq!(proxy.accepted(), 5);
    }
}
