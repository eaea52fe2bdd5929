//! The verbs warrenctl knows: how many arguments each takes, the line rabbitmqctl prints
//! before it runs one, and what its answer looks like.

use warren_cluster::ctl::{BINDING_COLUMNS, CONSUMER_COLUMNS};

/// What a verb's answer is.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// Done, or a refusal.
    Done,
    /// A report with a text and a JSON form.
    Report,
    /// Rows with fixed columns.
    Table,
    /// Rows whose columns the arguments choose, with these by default.
    Columns(&'static [&'static str]),
}

#[derive(Debug)]
pub struct Verb {
    pub name: &'static str,
    pub min: usize,
    /// None: any number more.
    pub max: Option<usize>,
    pub shape: Shape,
    /// The line printed before the verb runs; `{0}`, `{1}` are its arguments, `{vhost}` and
    /// `{node}` what they say, `{rest}` the arguments from the second on.
    announce: Option<&'static str>,
    /// The line printed after it succeeded.
    pub after: Option<&'static str>,
}

const fn verb(
    name: &'static str,
    min: usize,
    max: Option<usize>,
    shape: Shape,
    announce: Option<&'static str>,
) -> Verb {
    Verb {
        name,
        min,
        max,
        shape,
        announce,
        after: None,
    }
}

const VERBS: &[Verb] = &[
    verb("status", 0, Some(0), Shape::Report, None),
    verb(
        "cluster_status",
        0,
        Some(0),
        Shape::Report,
        // An informational line: `-q` drops it, as rabbitmqctl does.
        Some("Cluster status of node {node} ..."),
    ),
    verb("await_startup", 0, Some(0), Shape::Done, None),
    verb(
        "set_cluster_name",
        1,
        Some(1),
        Shape::Done,
        Some("Setting cluster name to {0} ..."),
    ),
    verb(
        "ping",
        0,
        Some(0),
        Shape::Done,
        Some(
            "Will ping {node}. This only checks if the OS process is running and registered with epmd. Timeout: 60000 ms.",
        ),
    ),
    verb(
        "stop",
        0,
        Some(0),
        Shape::Done,
        Some("Stopping and halting node {node} ..."),
    ),
    verb(
        "stop_app",
        0,
        Some(0),
        Shape::Done,
        Some("Stopping warren application on node {node} ..."),
    ),
    verb(
        "start_app",
        0,
        Some(0),
        Shape::Done,
        Some("Starting node {node} ..."),
    ),
    verb(
        "join_cluster",
        1,
        Some(1),
        Shape::Done,
        Some("Clustering node {node} with {0}"),
    ),
    verb(
        "forget_cluster_node",
        1,
        Some(1),
        Shape::Done,
        Some("Removing node {0} from the cluster"),
    ),
    verb(
        "change_cluster_node_type",
        1,
        Some(1),
        Shape::Done,
        Some("Turning {node} into a {0} node"),
    ),
    verb(
        "reset",
        0,
        Some(0),
        Shape::Done,
        Some("Resetting node {node} ..."),
    ),
    verb(
        "force_reset",
        0,
        Some(0),
        Shape::Done,
        Some("Forcefully resetting node {node} ..."),
    ),
    verb(
        "list_users",
        0,
        Some(0),
        Shape::Table,
        Some("Listing users ..."),
    ),
    Verb {
        after: Some(
            "Done. Don't forget to grant the user permissions to some virtual hosts! See 'warrenctl help set_permissions' to learn more.",
        ),
        ..verb(
            "add_user",
            2,
            Some(2),
            Shape::Done,
            Some("Adding user \"{0}\" ..."),
        )
    },
    verb(
        "delete_user",
        1,
        Some(1),
        Shape::Done,
        Some("Deleting user \"{0}\" ..."),
    ),
    verb(
        "change_password",
        2,
        Some(2),
        Shape::Done,
        Some("Changing password for user \"{0}\" ..."),
    ),
    verb(
        "set_user_tags",
        1,
        None,
        Shape::Done,
        Some("Setting tags for user \"{0}\" to [{rest}] ..."),
    ),
    verb(
        "list_vhosts",
        0,
        None,
        Shape::Columns(&["name"]),
        Some("Listing vhosts ..."),
    ),
    verb(
        "add_vhost",
        1,
        Some(1),
        Shape::Done,
        Some("Adding vhost \"{0}\" ..."),
    ),
    verb(
        "delete_vhost",
        1,
        Some(1),
        Shape::Done,
        Some("Deleting vhost \"{0}\" ..."),
    ),
    verb(
        "set_permissions",
        4,
        Some(4),
        Shape::Done,
        Some("Setting permissions for user \"{0}\" in vhost \"{vhost}\" ..."),
    ),
    verb(
        "clear_permissions",
        1,
        Some(1),
        Shape::Done,
        Some("Clearing permissions for user \"{0}\" in vhost \"{vhost}\" ..."),
    ),
    verb(
        "quorum_status",
        1,
        Some(1),
        Shape::Table,
        Some("Status of quorum queue {0} on node {node} ..."),
    ),
    verb(
        "add_member",
        2,
        Some(2),
        Shape::Done,
        Some("Adding a replica for queue {0} on node {1}..."),
    ),
    verb(
        "delete_member",
        2,
        Some(2),
        Shape::Done,
        Some("Removing a replica of queue {0} on node {1}..."),
    ),
    verb(
        "grow",
        2,
        Some(2),
        Shape::Table,
        Some("Growing {1} quorum queues on {0}..."),
    ),
    verb(
        "shrink",
        1,
        Some(1),
        Shape::Table,
        Some("Shrinking quorum queues on {0}..."),
    ),
    verb(
        "rebalance",
        1,
        Some(1),
        // The node draws the table (rabbitmq-queues' `pretty_table`).
        Shape::Report,
        Some("Re-balancing leaders of {0} queues..."),
    ),
    verb(
        "check_if_node_is_quorum_critical",
        0,
        Some(0),
        Shape::Report,
        Some("Checking if node {node} is critical for quorum of any quorum queues ..."),
    ),
    verb(
        "set_policy",
        3,
        Some(3),
        Shape::Done,
        Some(
            "Setting policy \"{0}\" for pattern \"{1}\" to \"{2}\" with priority \"{priority}\" for vhost \"{vhost}\" ...",
        ),
    ),
    verb(
        "clear_policy",
        1,
        Some(1),
        Shape::Done,
        Some("Clearing policy \"{0}\" on vhost \"{vhost}\" ..."),
    ),
    verb(
        "list_policies",
        0,
        Some(0),
        Shape::Table,
        Some("Listing policies for vhost \"{vhost}\" ..."),
    ),
    verb(
        "list_permissions",
        0,
        Some(0),
        Shape::Table,
        Some("Listing permissions for vhost \"{vhost}\" ..."),
    ),
    verb(
        "list_queues",
        0,
        None,
        Shape::Columns(&["name", "messages"]),
        Some("Timeout: 60.0 seconds ...\nListing queues for vhost {vhost} ..."),
    ),
    verb(
        "list_exchanges",
        0,
        None,
        Shape::Columns(&["name", "type"]),
        Some("Listing exchanges for vhost {vhost} ..."),
    ),
    verb(
        "list_connections",
        0,
        None,
        Shape::Columns(&["user", "peer_host", "peer_port", "state"]),
        Some("Listing connections ..."),
    ),
    verb(
        "list_channels",
        0,
        None,
        Shape::Columns(&["pid", "user", "consumer_count", "messages_unacknowledged"]),
        Some("Listing channels ..."),
    ),
    verb(
        "list_consumers",
        0,
        None,
        Shape::Columns(CONSUMER_COLUMNS),
        Some("Listing consumers in vhost {vhost} ..."),
    ),
    verb(
        "list_bindings",
        0,
        None,
        Shape::Columns(BINDING_COLUMNS),
        Some("Listing bindings for vhost {vhost}..."),
    ),
];

pub fn find(name: &str) -> Option<&'static Verb> {
    VERBS.iter().find(|v| v.name == name)
}

impl Verb {
    /// Checks the number of arguments, as rabbitmqctl does before it contacts the node.
    pub fn check(&self, args: &[String]) -> Result<(), String> {
        if args.len() < self.min {
            return Err("not enough arguments.".to_owned());
        }
        if self.max.is_some_and(|max| args.len() > max) {
            return Err("too many arguments.".to_owned());
        }
        if let ("grow", Some(strategy)) = (self.name, args.get(1)) {
            if strategy != "all" && strategy != "even" {
                return Err(format!("\"strategy '{strategy}' is not recognised.\""));
            }
        }
        Ok(())
    }

    pub fn announce(&self, args: &[String], vhost: &str, node: &str) -> Option<String> {
        let mut line = self.announce?.to_owned();
        for (i, a) in args.iter().enumerate().take(3) {
            line = line.replace(&format!("{{{i}}}"), a);
        }
        let rest = args.get(1..).unwrap_or_default().join(", ");
        Some(
            line.replace("{vhost}", vhost)
                .replace("{node}", node)
                .replace("{rest}", &rest),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_check_their_arguments_and_announce_as_rabbitmqctl() {
        let add = find("add_user").unwrap();
        assert!(add.check(&["bob".into()]).is_err());
        assert!(add.check(&["bob".into(), "pw".into(), "x".into()]).is_err());
        assert!(add.check(&["bob".into(), "pw".into()]).is_ok());
        assert_eq!(
            add.announce(&["bob".into(), "pw".into()], "/", "n")
                .unwrap(),
            "Adding user \"bob\" ..."
        );
        let tags = find("set_user_tags").unwrap();
        assert_eq!(
            tags.announce(&["bob".into(), "a".into(), "b".into()], "/", "n")
                .unwrap(),
            "Setting tags for user \"bob\" to [a, b] ..."
        );
        let perms = find("set_permissions").unwrap();
        assert_eq!(
            perms
                .announce(
                    &["bob".into(), ".*".into(), ".*".into(), ".*".into()],
                    "v1",
                    "n"
                )
                .unwrap(),
            "Setting permissions for user \"bob\" in vhost \"v1\" ..."
        );
        assert!(find("frobnicate").is_none());
    }
}
