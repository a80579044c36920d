//! A slow index for the benchmark: a TCP proxy in front of the Elasticsearch
//! API server that holds every chunk a client sends for a fixed time, so a
//! request takes longer the larger it is, as on a busy cluster.

use anyhow::Context as _;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The proxy; it stops when dropped.
pub struct DelayProxy {
    /// `http://127.0.0.1:PORT`, to give the daemon instead of the server's URL.
    pub url: String,
    task: JoinHandle<()>,
}

impl DelayProxy {
    /// Forwards connections to `target` (`host:port`), delaying what clients send by `delay`.
    pub async fn start(target: &str, delay: Duration) -> anyhow::Result<DelayProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let target = target.to_owned();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&target).await {
                        let _ = relay(client, server, delay).await;
                    }
                });
            }
        });
        Ok(DelayProxy { url, task })
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(client: TcpStream, server: TcpStream, delay: Duration) -> anyhow::Result<()> {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = async {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = client_read.read(&mut buffer).await?;
            if read == 0 {
                return server_write.shutdown().await;
            }
            tokio::time::sleep(delay).await;
            server_write.write_all(&buffer[..read]).await?;
        }
    };
    let downstream = tokio::io::copy(&mut server_read, &mut client_write);
    let (up, down) = tokio::join!(upstream, downstream);
    up.context("client to server")?;
    down.context("server to client")?;
    Ok(())
}
