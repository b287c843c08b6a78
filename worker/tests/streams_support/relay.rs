//! A relay in front of the enclave, as the host's: it copies bytes both ways (seeing only
//! TLS) and can cut every connection it carries, as a hostile or failing host would.

use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::runtime;

pub struct Relay {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    cut: Arc<Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl Relay {
    pub fn start(upstream: &str) -> Relay {
        let listener = runtime()
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let cut = Arc::new(Mutex::new(CancellationToken::new()));
        let stop = CancellationToken::new();
        let (upstream, cuts, stopped) = (upstream.to_string(), cut.clone(), stop.clone());
        runtime().spawn(async move {
            loop {
                let (mut client, _) = tokio::select! {
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                    () = stopped.cancelled() => return,
                };
                let token = cuts.lock().unwrap().clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        () = token.cancelled() => {}
                    }
                });
            }
        });
        Relay { addr, cut, stop }
    }

    /// Cuts every connection open now (new ones are relayed again).
    pub fn cut(&self) {
        let mut token = self.cut.lock().unwrap();
        token.cancel();
        *token = CancellationToken::new();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut();
    }
}
