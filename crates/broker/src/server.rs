//! The AMQP listener: accepts connections and runs each in its own task until the node shuts
//! down, when every connection is told `connection.close` 320 CONNECTION_FORCED.

use crate::broker::Broker;
use crate::connection;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A running node: its listener's address and the switch that stops it.
pub struct Server {
    pub local_addr: SocketAddr,
    broker: Arc<Broker>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    alarm_monitor: tokio::task::JoinHandle<()>,
    trimmer: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Binds the AMQP listener and starts accepting.
    pub async fn start(broker: Arc<Broker>) -> std::io::Result<Server> {
        let listener = TcpListener::bind(broker.config.amqp.listen).await?;
        let local_addr = listener.local_addr()?;
        let trimmer = tokio::spawn(crate::trim::run(broker.clone()));
        let alarm_monitor = {
            let broker = broker.clone();
            tokio::spawn(async move { broker.alarms.run().await })
        };
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, broker.clone(), stopped));
        tracing::info!(%local_addr, "AMQP listener started");
        Ok(Server {
            local_addr,
            broker,
            stop,
            task,
            alarm_monitor,
            trimmer,
        })
    }

    /// Stops accepting, asks every connection to close, and waits for them (a few seconds at
    /// most).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        // Connections are closed: queues stop now, writing out what they hold (durable
        // queues keep their logs for the next start).
        self.broker.meta.shut_down().await;
        if let Some(g) = self.broker.meta.group() {
            g.shut_down().await;
        }
        self.alarm_monitor.abort();
        self.trimmer.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    broker: Arc<Broker>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    conns.spawn(connection::serve(stream, peer, broker.clone(), stopped.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .is_err()
    {
        conns.abort_all();
    }
}
