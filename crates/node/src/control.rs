//! Answers warrenctl: each request on the control channel is a rabbitmqctl verb, carried out
//! through the broker's admin surface and answered with rows, a report or a refusal carrying
//! rabbitmqctl's exit code. Each request is answered by a task of its own, so that one that
//! waits (`await_startup`) does not hold up the others.

use crate::app::{App, StartError};
use crate::entities;
use crate::listing;
use crate::membership;
use crate::quorum_verbs;
use crate::transport::MeshTransport;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use warren_broker::admin::{Admin, Refusal};
use warren_cluster::ctl::{Answer, Request, decode, encode, exit};
use warren_cluster::{Channel, Inbound, Mesh};

pub struct Control {
    app: Arc<App>,
    mesh: Mesh,
    links: Arc<MeshTransport>,
    stop: watch::Sender<bool>,
}

/// How long `await_startup` waits for the application.
const AWAIT_STARTUP: Duration = Duration::from_secs(60);

fn app_stopped() -> Answer {
    Answer::failed(
        exit::USAGE,
        "this command requires the 'warren' app to be running on the target node. Start it with 'warrenctl start_app'.",
    )
}

fn refused(r: Refusal) -> Answer {
    let code = match r {
        Refusal::NoSuchUser(_) => exit::NO_USER,
        Refusal::NoSuchVhost(_) => exit::DATA,
        Refusal::TimedOut(_) => exit::TEMP_FAIL,
        Refusal::UserExists(_) | Refusal::Other(_) => exit::SOFTWARE,
    };
    Answer::failed(code, r.to_string())
}

fn done(r: Result<(), Refusal>) -> Answer {
    r.map_or_else(refused, |()| Answer::Done)
}

fn table(columns: &[&str], rows: Vec<Vec<serde_json::Value>>) -> Answer {
    Answer::Table {
        columns: columns.iter().map(|c| (*c).to_owned()).collect(),
        rows,
    }
}

impl Control {
    pub fn new(
        app: Arc<App>,
        mesh: Mesh,
        links: Arc<MeshTransport>,
        stop: watch::Sender<bool>,
    ) -> Arc<Control> {
        Arc::new(Control {
            app,
            mesh,
            links,
            stop,
        })
    }

    /// Answers the `requests` that arrive on the control channel.
    pub async fn serve(self: Arc<Self>, mut requests: tokio::sync::mpsc::Receiver<Inbound>) {
        while let Some(msg) = requests.recv().await {
            if msg.ended {
                continue;
            }
            let control = self.clone();
            tokio::spawn(async move {
                let answer = match decode::<Request>(&msg.payload) {
                    Ok(req) => {
                        tracing::info!(from = %msg.from, verb = %req.verb, "control request");
                        control.answer(req).await
                    }
                    Err(e) => Answer::failed(exit::USAGE, e),
                };
                let _ = control
                    .mesh
                    .send(&msg.from, Channel::Control, encode(&answer))
                    .await;
            });
        }
    }

    /// The verbs about the application itself, which work whether or not it runs.
    async fn lifecycle(&self, req: &Request) -> Option<Answer> {
        let verb = req.verb.as_str();
        Some(match verb {
            "ping" => Answer::Done,
            "stop" => {
                let _ = self.stop.send(true);
                Answer::Done
            }
            "stop_app" => {
                self.app.stop().await;
                Answer::Done
            }
            "start_app" => match self.app.start().await {
                Ok(_) => Answer::Done,
                Err(StartError::Open(e) | StartError::Listen(e)) => {
                    Answer::failed(exit::SOFTWARE, e)
                }
            },
            "join_cluster" => {
                let ram = req.options.contains_key("ram");
                let target = req.args.first().map(String::as_str).unwrap_or_default();
                membership::join_cluster(&self.app, &self.mesh, target, ram).await
            }
            "change_cluster_node_type" => {
                let kind = req.args.first().map(String::as_str).unwrap_or_default();
                membership::change_cluster_node_type(&self.app, &self.mesh, kind).await
            }
            "forget_cluster_node" => {
                let offline = req.options.contains_key("offline");
                let node = req.args.first().map(String::as_str).unwrap_or_default();
                membership::forget_cluster_node(&self.app, &self.mesh, &self.links, node, offline)
                    .await
            }
            "reset" => membership::reset(&self.app, &self.mesh, false).await,
            "force_reset" => membership::reset(&self.app, &self.mesh, true).await,
            "await_startup" => {
                let deadline = tokio::time::Instant::now() + AWAIT_STARTUP;
                while self.app.admin().await.is_none() {
                    if tokio::time::Instant::now() >= deadline {
                        return Some(Answer::failed(
                            exit::TEMP_FAIL,
                            "the application did not start in time",
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Answer::Done
            }
            _ => return None,
        })
    }

    fn vhost(req: &Request) -> &str {
        req.options.get("vhost").map_or("/", String::as_str)
    }

    async fn answer(&self, req: Request) -> Answer {
        if let Some(answer) = self.lifecycle(&req).await {
            return answer;
        }
        let Some((admin, amqp)) = self.app.admin().await else {
            return app_stopped();
        };
        let admin = &admin;
        if let Some(answer) = quorum_verbs::answer(&req, admin, &self.mesh.me().name).await {
            return answer;
        }
        let a = &req.args;
        let arg = |i: usize| a.get(i).map(String::as_str).unwrap_or_default();
        match req.verb.as_str() {
            "status" => self.status(admin, amqp),
            "cluster_status" => self.cluster_status(admin, amqp).await,
            "list_users" => table(
                &["user", "tags"],
                admin
                    .users()
                    .into_iter()
                    .map(|(u, tags)| vec![u.into(), tags.into()])
                    .collect(),
            ),
            "add_user" => done(admin.add_user(arg(0), arg(1)).await),
            "delete_user" => done(admin.delete_user(arg(0)).await),
            "change_password" => done(admin.change_password(arg(0), arg(1)).await),
            "set_user_tags" => done(
                admin
                    .set_user_tags(arg(0), a.get(1..).unwrap_or_default().to_vec())
                    .await,
            ),
            "list_vhosts" => table(
                &["name", "default_queue_type"],
                admin
                    .vhosts()
                    .into_iter()
                    .map(|(name, t)| {
                        let t = t.map_or("undefined", |t| t.as_str());
                        vec![name.into(), t.into()]
                    })
                    .collect(),
            ),
            "add_vhost" => match req
                .options
                .get("default-queue-type")
                .map(|t| warren_meta::QueueType::parse(t).ok_or(()))
            {
                // rabbitmqctl's answer to a type it does not know.
                Some(Err(())) => Answer::failed(exit::UNAVAILABLE, "invalid_queue_type"),
                Some(Ok(t)) => done(admin.add_vhost(arg(0), Some(t)).await),
                None => done(admin.add_vhost(arg(0), None).await),
            },
            "set_cluster_name" => done(admin.set_cluster_name(arg(0)).await),
            "delete_vhost" => done(admin.delete_vhost(arg(0)).await),
            "set_permissions" => {
                let p = warren_broker::admin::permissions(arg(1), arg(2), arg(3));
                done(admin.set_permissions(Self::vhost(&req), arg(0), p).await)
            }
            "set_policy" => {
                let priority = match req.options.get("priority").map(|p| p.parse::<i64>()) {
                    None => 0,
                    Some(Ok(p)) => p,
                    Some(Err(_)) => {
                        return Answer::failed(exit::USAGE, "the priority must be an integer");
                    }
                };
                let policy = warren_meta::Policy {
                    name: arg(0).to_owned(),
                    pattern: arg(1).to_owned(),
                    apply_to: req
                        .options
                        .get("apply-to")
                        .cloned()
                        .unwrap_or_else(|| "all".to_owned()),
                    definition: arg(2).to_owned(),
                    priority,
                };
                match admin.set_policy(Self::vhost(&req), policy).await {
                    Ok(Some(warning)) => Answer::Warned(warning),
                    Ok(None) => Answer::Done,
                    Err(r) => refused(r),
                }
            }
            "clear_policy" => done(admin.clear_policy(Self::vhost(&req), arg(0)).await),
            "list_policies" => match admin.policies(Self::vhost(&req)) {
                Ok(rows) => {
                    let vhost = Self::vhost(&req);
                    table(
                        &[
                            "vhost",
                            "name",
                            "pattern",
                            "apply-to",
                            "definition",
                            "priority",
                        ],
                        rows.into_iter()
                            .map(|p| {
                                vec![
                                    vhost.into(),
                                    p.name.into(),
                                    p.pattern.into(),
                                    p.apply_to.into(),
                                    p.definition.into(),
                                    p.priority.into(),
                                ]
                            })
                            .collect(),
                    )
                }
                Err(r) => refused(r),
            },
            "clear_permissions" => done(admin.clear_permissions(Self::vhost(&req), arg(0)).await),
            "list_permissions" => match admin.permissions(Self::vhost(&req)) {
                Ok(rows) => table(
                    &["user", "configure", "write", "read"],
                    rows.into_iter()
                        .map(|(u, p)| {
                            vec![u.into(), p.configure.into(), p.write.into(), p.read.into()]
                        })
                        .collect(),
                ),
                Err(r) => refused(r),
            },
            verb if entities::is_entity_listing(verb) => {
                entities::answer(verb, admin, Self::vhost(&req)).await
            }
            verb if listing::is_gathered(verb) => {
                table(listing::columns(verb), self.gather(verb, admin, amqp).await)
            }
            other => Answer::failed(exit::USAGE, format!("Command '{other}' not found.")),
        }
    }

    fn here(&self, amqp: SocketAddr) -> listing::Here<'_> {
        listing::Here {
            me: &self.mesh.me().name,
            amqp,
            cluster: self.mesh.listen_addr(),
        }
    }

    /// Every running node's rows of `verb`, this node's first.
    async fn gather(
        &self,
        verb: &str,
        admin: &Admin,
        amqp: SocketAddr,
    ) -> Vec<Vec<serde_json::Value>> {
        let me = self.mesh.me().name.clone();
        let mut rows = listing::local_rows(verb, admin, &self.here(amqp)).await;
        for peer in admin.running_members() {
            if peer != me {
                rows.extend(self.links.rows_of(&peer, verb).await);
            }
        }
        rows
    }

    fn status(&self, admin: &Admin, amqp: SocketAddr) -> Answer {
        let me = &self.mesh.me().name;
        let json = serde_json::json!({
            "node": me,
            "product_name": "warren",
            "product_version": env!("CARGO_PKG_VERSION"),
            "listeners": listing::listener_maps(&listing::own_listeners(&self.here(amqp))),
            "connections": admin.connection_count(),
            "alarms": listing::alarm_maps(&listing::own_alarms(admin, me)),
        });
        let text = format!(
            "Status of node {me} ...\nRuntime\n\nProduct name: warren\nProduct version: {}\n\nListeners\n\n{}",
            env!("CARGO_PKG_VERSION"),
            listing::listener_lines(&listing::own_listeners(&self.here(amqp)))
        );
        Answer::Report { json, text }
    }

    /// Every running node's raised alarms (see `listing::ALARMS`).
    async fn alarms(&self, admin: &Admin, amqp: SocketAddr) -> Vec<Vec<serde_json::Value>> {
        let mut rows = self.gather(listing::ALARMS, admin, amqp).await;
        rows.sort_by_key(|r| r.first().map(|n| n.to_string()));
        rows
    }

    async fn cluster_status(&self, admin: &Admin, amqp: SocketAddr) -> Answer {
        let alarms = self.alarms(admin, amqp).await;
        let mut listeners = self.gather(listing::LISTENERS, admin, amqp).await;
        // By node, as rabbitmqctl lists them; a node's own listeners keep their order.
        listeners.sort_by_key(|r| r.first().map(|n| n.to_string()));
        let (disk, ram) = admin.members();
        let members: Vec<&String> = disk.iter().chain(&ram).collect();
        let running: Vec<String> = admin
            .running_members()
            .into_iter()
            .filter(|n| members.contains(&n))
            .collect();
        let cluster_name = admin.cluster_name();
        let versions: serde_json::Map<String, serde_json::Value> = running
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    serde_json::json!({"product_name": "warren", "product_version": env!("CARGO_PKG_VERSION")}),
                )
            })
            .collect();
        let json = serde_json::json!({
            "cluster_name": cluster_name,
            "disk_nodes": disk,
            "ram_nodes": ram,
            "running_nodes": running,
            "alarms": listing::alarm_maps(&alarms),
            "partitions": {},
            "network_partitions": {},
            "listeners": listing::listeners_by_node(&listeners),
            "versions": versions,
        });
        let mut text = format!(
            "Basics\n\nCluster name: {cluster_name}\n\nDisk Nodes\n\n{}\n\n",
            disk.join("\n")
        );
        if !ram.is_empty() {
            text.push_str(&format!("RAM Nodes\n\n{}\n\n", ram.join("\n")));
        }
        text.push_str(&format!(
            "Running Nodes\n\n{}\n\nVersions\n\n{}\n\nAlarms\n\n{}\n\nNetwork Partitions\n\n(none)\n\nListeners\n\n{}",
            running.join("\n"),
            running
                .iter()
                .map(|n| format!("{n}: warren {}", env!("CARGO_PKG_VERSION")))
                .collect::<Vec<_>>()
                .join("\n"),
            listing::alarm_lines(&alarms),
            listing::listener_lines(&listeners)
        ));
        Answer::Report { json, text }
    }
}
