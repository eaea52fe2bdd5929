//! The broker application of this node: what `stop_app` stops and `start_app` starts again
//! while the node itself, and its cluster port, stay up (as RabbitMQ's `rabbit` application
//! inside its Erlang node; the article's `join_cluster` runs between the two).

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{Mutex, watch};
use warren_broker::admin::Admin;
use warren_broker::{Broker, ClusterSetup, Config, Server};

/// Why the application did not start.
pub enum StartError {
    /// The data directory could not be read (exit code 2).
    Open(String),
    /// The AMQP address could not be listened on.
    Listen(String),
}

struct Running {
    server: Server,
    broker: Arc<Broker>,
    admin: Admin,
}

pub struct App {
    config: Config,
    setup: ClusterSetup,
    running: Mutex<Option<Running>>,
    /// Where clients connect: the configured address, then the one bound first, so that a
    /// `start_app` after `stop_app` listens where clients found the node before.
    listen: std::sync::Mutex<SocketAddr>,
    /// The broker while it runs, for what must not wait on `running`'s lock (every frame
    /// from other nodes looks it up); emptied as soon as a stop begins.
    current: watch::Sender<Option<Arc<Broker>>>,
}

impl App {
    pub fn new(config: Config, setup: ClusterSetup) -> Arc<App> {
        Arc::new(App {
            listen: std::sync::Mutex::new(config.amqp.listen),
            config,
            setup,
            running: Mutex::new(None),
            current: watch::Sender::new(None),
        })
    }

    /// Opens the broker over the data directory and listens for clients; nothing if it runs.
    pub async fn start(&self) -> Result<SocketAddr, StartError> {
        let mut running = self.running.lock().await;
        if let Some(r) = running.as_ref() {
            return Ok(r.server.local_addr);
        }
        let mut config = self.config.clone();
        let listen = *self.listen.lock().unwrap_or_else(|e| e.into_inner());
        config.amqp.listen = listen;
        let broker = Broker::open_in(config, &self.setup)
            .await
            .map_err(StartError::Open)?;
        let server = match Server::start(broker.clone()).await {
            Ok(s) => s,
            Err(e) => {
                if let Some(g) = broker.meta.group() {
                    g.shut_down().await;
                }
                broker.meta.shut_down().await;
                return Err(StartError::Listen(format!(
                    "cannot listen on {listen}: {e}"
                )));
            }
        };
        let addr = server.local_addr;
        *self.listen.lock().unwrap_or_else(|e| e.into_inner()) = addr;
        self.current.send_replace(Some(broker.clone()));
        *running = Some(Running {
            server,
            admin: Admin::new(broker.clone()),
            broker,
        });
        Ok(addr)
    }

    /// Closes every client connection and stops every queue (keeping their logs); nothing if
    /// it is stopped.
    pub async fn stop(&self) {
        // Held throughout, so that a start waits for the stop to finish with the data.
        let mut running = self.running.lock().await;
        self.current.send_replace(None);
        if let Some(r) = running.take() {
            r.server.shutdown().await;
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn setup(&self) -> &ClusterSetup {
        &self.setup
    }

    pub async fn is_running(&self) -> bool {
        self.running.lock().await.is_some()
    }

    /// The running broker.
    pub async fn broker(&self) -> Option<Arc<Broker>> {
        self.running.lock().await.as_ref().map(|r| r.broker.clone())
    }

    /// The running broker, without waiting for a start or stop under way to finish.
    pub fn broker_now(&self) -> Option<Arc<Broker>> {
        self.current.borrow().clone()
    }

    /// Whether the broker runs, as it changes.
    pub fn watch_running(&self) -> watch::Receiver<Option<Arc<Broker>>> {
        self.current.subscribe()
    }

    /// The running application's admin surface and AMQP address.
    pub async fn admin(&self) -> Option<(Admin, SocketAddr)> {
        self.running
            .lock()
            .await
            .as_ref()
            .map(|r| (r.admin.clone(), r.server.local_addr))
    }
}
