//! Users, permissions and policies.

use super::*;

#[test]
fn users_permissions_and_vhosts() {
    let mut t = with_root();
    let add = Command::AddUser {
        name: "bob".into(),
        password: PasswordHash::new("pw"),
        tags: vec![],
    };
    t.apply(&add).unwrap();
    assert_eq!(
        refused(&mut t, &add),
        "PRECONDITION_FAILED - user 'bob' already exists"
    );
    t.apply(&Command::ChangePassword {
        name: "bob".into(),
        password: PasswordHash::new("new"),
    })
    .unwrap();
    assert!(t.user("bob").unwrap().password.verify("new"));
    t.apply(&Command::SetUserTags {
        name: "bob".into(),
        tags: vec!["monitoring".into()],
    })
    .unwrap();
    assert_eq!(t.user("bob").unwrap().tags, vec!["monitoring".to_string()]);
    let all = Permissions {
        configure: ".*".into(),
        write: ".*".into(),
        read: ".*".into(),
    };
    let set = |user: &str, vhost: &str| Command::SetPermissions {
        user: user.into(),
        vhost: vhost.into(),
        permissions: all.clone(),
    };
    assert_eq!(
        refused(&mut t, &set("nobody", "/")),
        "NOT_FOUND - user 'nobody' not found"
    );
    assert_eq!(
        refused(&mut t, &set("bob", "/x")),
        "NOT_FOUND - vhost '/x' not found"
    );
    t.apply(&Command::AddVhost { name: "/x".into() }).unwrap();
    t.apply(&set("bob", "/")).unwrap();
    t.apply(&set("bob", "/x")).unwrap();
    assert_eq!(t.permissions("bob", "/"), Some(&all));
    // Deleting a vhost takes its queues (for the node to stop) and its permissions.
    let mut in_x = queue("qx", 9, true);
    if let Command::DeclareQueue { vhost, .. } = &mut in_x {
        *vhost = "/x".into();
    }
    t.apply(&in_x).unwrap();
    let a = t
        .apply(&Command::DeleteVhost { name: "/x".into() })
        .unwrap();
    assert!(
        a.effects
            .iter()
            .any(|e| matches!(e, Effect::QueueDeleted { queue, .. } if queue.id == uid(9)))
    );
    assert!(t.permissions("bob", "/x").is_none());
    assert_eq!(
        refused(&mut t, &Command::DeleteVhost { name: "/x".into() }),
        "NOT_FOUND - vhost '/x' not found"
    );
    t.apply(&Command::DeleteUser { name: "bob".into() })
        .unwrap();
    assert!(t.permissions("bob", "/").is_none() && t.user("bob").is_none());
}

#[test]
fn policies_are_validated() {
    let mut t = with_root();
    let policy = |apply_to: &str, definition: &str| Command::SetPolicy {
        vhost: "/".into(),
        policy: Policy {
            name: "p".into(),
            pattern: "^q".into(),
            apply_to: apply_to.into(),
            definition: definition.into(),
            priority: 0,
        },
    };
    assert!(refused(&mut t, &policy("things", "{}")).contains("not a valid apply-to value"));
    assert!(refused(&mut t, &policy("queues", "[1]")).contains("must be a JSON object"));
    t.apply(&policy("queues", r#"{"max-length": 10}"#)).unwrap();
    assert_eq!(
        t.export(Scope::Durable).policies[0].definition["max-length"],
        10
    );
    let clear = Command::ClearPolicy {
        vhost: "/".into(),
        name: "p".into(),
    };
    t.apply(&clear).unwrap();
    assert_eq!(
        refused(&mut t, &clear),
        "NOT_FOUND - policy 'p' in vhost '/' not found"
    );
}
