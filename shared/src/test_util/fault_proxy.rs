//! A TCP proxy on 127.0.0.1 that a test puts between the app and a dependency (PgBouncer, the
//! model stub, the S3 server) and makes sick on demand: [`Fault::Stall`] (the connection
//! stays open and nothing gets through, until the fault ends), [`Fault::Latency`] (each chunk
//! of bytes waits that long), [`Fault::Reset`] (every connection is reset, new ones at once),
//! [`Fault::BlackHole`] (everything sent is swallowed and nothing comes back). A fault applies
//! to the connections open at the time and to new ones alike.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to the bytes it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing: bytes pass as they come.
    None,
    /// Nothing passes, in either direction, and connections stay open; what was held back
    /// passes once the fault ends.
    Stall,
    /// Each chunk of bytes, either way, waits this long before it is passed on.
    Latency(Duration),
    /// Every connection is reset (TCP RST), and every new one as soon as it is accepted.
    Reset,
    /// Bytes are read and dropped, either way; nothing ever comes back.
    BlackHole,
}

/// The running proxy; it stops with the test's runtime.
#[derive(Clone)]
pub struct FaultProxy {
    address: SocketAddr,
    fault: Arc<watch::Sender<Fault>>,
    connections: Arc<AtomicUsize>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream`, passing everything until told otherwise.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let address = listener.local_addr().expect("a bound address");
        let (fault, _) = watch::channel(Fault::None);
        let proxy = Self { address, fault: Arc::new(fault), connections: Arc::default() };
        let accepting = proxy.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                accepting.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(carry(client, upstream, accepting.fault.subscribe()));
            }
        });
        proxy
    }

    /// Where the app connects instead of the dependency.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Makes the proxy sick (or well again, with [`Fault::None`]).
    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// How many connections it has accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Carries one connection until either side closes it or a reset ends it.
async fn carry(client: TcpStream, upstream: SocketAddr, mut fault: watch::Receiver<Fault>) {
    if *fault.borrow_and_update() == Fault::Reset {
        return reset(&client);
    }
    let Ok(Ok(server)) = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(upstream)).await
    else {
        return reset(&client);
    };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (client_reads, client_writes) = client.into_split();
    let (server_reads, server_writes) = server.into_split();
    // A reset makes either pump arm both sockets to reset as they close, and return: the other
    // is dropped with it.
    tokio::select! {
        () = pump(client_reads, server_writes, fault.clone()) => {}
        () = pump(server_reads, client_writes, fault) => {}
    }
}

/// Closes `stream` with a reset rather than a goodbye.
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// Copies `from` to `to` as the fault allows, until `from` ends or a reset comes.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut fault: watch::Receiver<Fault>) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        // Hold still while stalled; a reset arms both sockets to reset as they close.
        let current = loop {
            let current = *fault.borrow_and_update();
            match current {
                Fault::Stall => {
                    if fault.changed().await.is_err() {
                        return;
                    }
                }
                Fault::Reset => {
                    reset(from.as_ref());
                    reset(to.as_ref());
                    return;
                }
                other => break other,
            }
        };
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            // A new fault applies to the next chunk.
            changed = fault.changed() => match changed {
                Ok(()) => continue,
                Err(_) => return,
            },
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // The fault may have changed while the chunk was on its way.
        let now = *fault.borrow();
        match (now, current) {
            (Fault::BlackHole, _) | (_, Fault::BlackHole) => continue,
            (Fault::Stall, _) => {
                while *fault.borrow_and_update() == Fault::Stall {
                    if fault.changed().await.is_err() {
                        return;
                    }
                }
            }
            (_, Fault::Latency(wait)) => tokio::time::sleep(wait).await,
            _ => {}
        }
        if *fault.borrow() == Fault::Reset {
            reset(from.as_ref());
            reset(to.as_ref());
            return;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
